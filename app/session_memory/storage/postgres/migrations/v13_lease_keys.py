"""Migration 13: idempotent lease acquisitions.

``session_leases.acquire_key`` keeps the Idempotency-Key of the acquisition that
granted the lease (NULL: none). The acquisition function gains the key: one with the
key of the lease held is a retry of the acquisition that got it (its answer was
lost), and gets that lease back, same token, renewed for its own TTL from now; any
other is refused while the lease is held, as before. Once the lease ended, the key
matches nothing that is held, and an acquisition with it gets a new lease.

The four-argument function stays, for replicas not yet upgraded, but now grants
through the new one without a key: granted the old way, a lease would keep the key
of the lease before it, and a late retry of that earlier acquisition would be handed
another run's lease.
"""

from __future__ import annotations

__all__ = ["LEASE_KEYS"]

LEASE_KEYS = """
ALTER TABLE session_leases ADD COLUMN acquire_key TEXT;

-- r_status 'ok' with the lease's token, expiry (epoch seconds), TTL and whether it
-- refuses unleased writes (a retry's: the lease's own), or 'leased' with the seconds
-- until the lease held expires.
CREATE FUNCTION session_memory_lease_acquire(
    p_tenant text, p_session text, p_ttl float8, p_refuse boolean, p_key text,
    OUT r_status text, OUT r_token bigint, OUT r_expires float8, OUT r_wait float8,
    OUT r_ttl float8, OUT r_refuse boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_last bigint;
    v_expires timestamptz;
    v_key text;
BEGIN
    PERFORM pg_advisory_xact_lock(session_memory_lease_key(p_tenant, p_session));
    SELECT token, expires_at, acquire_key INTO v_last, v_expires, v_key FROM session_leases
    WHERE tenant = p_tenant AND session_id = p_session;
    IF v_expires > clock_timestamp() THEN
        IF p_key IS NOT NULL AND p_key = v_key THEN
            UPDATE session_leases
            SET expires_at = clock_timestamp() + make_interval(secs => ttl_seconds)
            WHERE tenant = p_tenant AND session_id = p_session
            RETURNING token, extract(epoch FROM expires_at)::float8, ttl_seconds,
                refuse_unleased
            INTO r_token, r_expires, r_ttl, r_refuse;
            r_status := 'ok';
            RETURN;
        END IF;
        r_status := 'leased';
        r_wait := extract(epoch FROM v_expires - clock_timestamp());
        RETURN;
    END IF;
    r_token := greatest(coalesce(v_last, 0) + 1, session_memory_now_us());
    v_expires := clock_timestamp() + make_interval(secs => p_ttl);
    INSERT INTO session_leases (tenant, session_id, token, expires_at, ttl_seconds,
        refuse_unleased, acquire_key)
    VALUES (p_tenant, p_session, r_token, v_expires, p_ttl, p_refuse, p_key)
    ON CONFLICT (tenant, session_id) DO UPDATE SET token = excluded.token,
        expires_at = excluded.expires_at, ttl_seconds = excluded.ttl_seconds,
        refuse_unleased = excluded.refuse_unleased, acquire_key = excluded.acquire_key;
    r_status := 'ok';
    r_expires := extract(epoch FROM v_expires);
    r_ttl := p_ttl;
    r_refuse := p_refuse;
END
$$;

CREATE OR REPLACE FUNCTION session_memory_lease_acquire(
    p_tenant text, p_session text, p_ttl float8, p_refuse boolean,
    OUT r_status text, OUT r_token bigint, OUT r_expires float8, OUT r_wait float8
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.r_status, a.r_token, a.r_expires, a.r_wait
    INTO r_status, r_token, r_expires, r_wait
    FROM session_memory_lease_acquire(p_tenant, p_session, p_ttl, p_refuse, NULL::text) a;
END
$$;
"""
