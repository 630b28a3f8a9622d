"""Migration 12: run leases, and the write functions fenced by them.

``session_leases`` holds each leased session's current or last lease, apart from its
record (a clear or an expiry leaves it be); an ended lease's row stays, its token
the floor of the next, until the sweep deletes it long after.

A session's lease and the writes to it meet on one advisory lock: a write takes it
shared (``session_memory_lease_check``), so writes run side by side, and an
acquisition, renewal or release takes it exclusive, so it waits for the writes under
way and the writes after it see it. The check reads the lease in a statement after
the lock, which sees every change committed while it waited. It needs no row, so a
session leased for the first time is fenced as surely as one leased before.

The write functions are wrapped (``session_memory_fenced_*``: their arguments and
results, and last the token the write carries, NULL for none): the check, then the
write, in the one statement and round trip the write was. A refusal is a status,
as the write functions' own are: ``lease_lost`` (the token is not the lease held)
or ``leased`` (no token, and the lease held refuses unleased writes). The unwrapped
functions stay, so a replica not yet upgraded keeps working while others migrate.

A trigger notifies followers of a lease acquired or renewed (``lease``) or released
(``lease-end``), the token in the place of the revision, as migration 8's does.
"""

from __future__ import annotations

__all__ = ["RUN_LEASES"]

_TABLE = """
CREATE TABLE session_leases (
    tenant          TEXT        NOT NULL,
    session_id      TEXT        NOT NULL,
    token           BIGINT      NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    ttl_seconds     FLOAT8      NOT NULL,
    refuse_unleased BOOLEAN     NOT NULL,
    PRIMARY KEY (tenant, session_id)
);
CREATE INDEX session_leases_by_expiry ON session_leases (expires_at);

-- The advisory lock key of a session's lease.
CREATE FUNCTION session_memory_lease_key(p_tenant text, p_session text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended(p_session, hashtextextended(p_tenant, 24))
$$;

-- Whether a write carrying p_token (NULL: none) may go on (NULL), or why not.
CREATE FUNCTION session_memory_lease_check(p_tenant text, p_session text, p_token bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_token bigint;
    v_refuse boolean;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(session_memory_lease_key(p_tenant, p_session));
    SELECT token, refuse_unleased INTO v_token, v_refuse FROM session_leases
    WHERE tenant = p_tenant AND session_id = p_session AND expires_at > clock_timestamp();
    IF p_token IS NOT NULL THEN
        RETURN CASE WHEN p_token = v_token THEN NULL ELSE 'lease_lost' END;
    END IF;
    RETURN CASE WHEN v_refuse THEN 'leased' END;
END
$$;

CREATE FUNCTION session_memory_lease_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM session_followers f
               WHERE f.tenant = NEW.tenant AND f.session_id = NEW.session_id) THEN
        PERFORM pg_notify('session_memory', json_build_array(
            CASE WHEN NEW.expires_at > clock_timestamp() THEN 'lease' ELSE 'lease-end' END,
            TG_TABLE_SCHEMA, NEW.tenant, NEW.session_id, NEW.token, 0)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER session_leases_notify AFTER INSERT OR UPDATE ON session_leases
    FOR EACH ROW EXECUTE FUNCTION session_memory_lease_notify();
"""

# r_status 'ok' with the new lease's token and expiry (epoch seconds), or 'leased'
# with the seconds until the lease held expires.
_LEASE_FUNCTIONS = """
CREATE FUNCTION session_memory_lease_acquire(
    p_tenant text, p_session text, p_ttl float8, p_refuse boolean,
    OUT r_status text, OUT r_token bigint, OUT r_expires float8, OUT r_wait float8
) LANGUAGE plpgsql AS $$
DECLARE
    v_last bigint;
    v_expires timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(session_memory_lease_key(p_tenant, p_session));
    SELECT token, expires_at INTO v_last, v_expires FROM session_leases
    WHERE tenant = p_tenant AND session_id = p_session;
    IF v_expires > clock_timestamp() THEN
        r_status := 'leased';
        r_wait := extract(epoch FROM v_expires - clock_timestamp());
        RETURN;
    END IF;
    r_token := greatest(coalesce(v_last, 0) + 1, session_memory_now_us());
    v_expires := clock_timestamp() + make_interval(secs => p_ttl);
    INSERT INTO session_leases VALUES (p_tenant, p_session, r_token, v_expires, p_ttl, p_refuse)
    ON CONFLICT (tenant, session_id) DO UPDATE SET token = excluded.token,
        expires_at = excluded.expires_at, ttl_seconds = excluded.ttl_seconds,
        refuse_unleased = excluded.refuse_unleased;
    r_status := 'ok';
    r_expires := extract(epoch FROM v_expires);
END
$$;

-- r_status 'ok' with the new expiry and TTL (p_ttl, or NULL: the lease's own), or
-- 'lease_lost'.
CREATE FUNCTION session_memory_lease_renew(
    p_tenant text, p_session text, p_token bigint, p_ttl float8,
    OUT r_status text, OUT r_expires float8, OUT r_ttl float8, OUT r_refuse boolean
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(session_memory_lease_key(p_tenant, p_session));
    UPDATE session_leases SET ttl_seconds = coalesce(p_ttl, ttl_seconds),
        expires_at = clock_timestamp() + make_interval(secs => coalesce(p_ttl, ttl_seconds))
    WHERE tenant = p_tenant AND session_id = p_session AND token = p_token
    AND expires_at > clock_timestamp()
    RETURNING extract(epoch FROM expires_at)::float8, ttl_seconds, refuse_unleased
    INTO r_expires, r_ttl, r_refuse;
    r_status := CASE WHEN FOUND THEN 'ok' ELSE 'lease_lost' END;
END
$$;

-- 'ok' (the lease ends now; its row stays, with its token), or 'lease_lost'.
CREATE FUNCTION session_memory_lease_release(p_tenant text, p_session text, p_token bigint)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(session_memory_lease_key(p_tenant, p_session));
    UPDATE session_leases SET expires_at = clock_timestamp()
    WHERE tenant = p_tenant AND session_id = p_session AND token = p_token
    AND expires_at > clock_timestamp();
    RETURN CASE WHEN FOUND THEN 'ok' ELSE 'lease_lost' END;
END
$$;
"""

_FENCED_WRITES = """
CREATE FUNCTION session_memory_fenced_append(
    p_tenant text, p_session text, p_items text[], p_max_items bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint, p_ttl float8,
    p_default_ttl float8, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
BEGIN
    r_status := session_memory_lease_check(p_tenant, p_session, p_lease);
    IF r_status IS NULL THEN
        SELECT * INTO r_status, r_first, r_last, r_revision, r_held, r_kept, r_replay
        FROM session_memory_append(p_tenant, p_session, p_items, p_max_items, p_max_sessions,
            p_key, p_fingerprint, p_key_ttl, p_expected, p_ttl, p_default_ttl, p_inline);
    END IF;
END
$$;

CREATE FUNCTION session_memory_fenced_pop(
    p_tenant text, p_session text, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_default_ttl float8, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_item text, OUT r_revision bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
BEGIN
    r_status := session_memory_lease_check(p_tenant, p_session, p_lease);
    IF r_status IS NULL THEN
        SELECT * INTO r_status, r_item, r_revision, r_replay
        FROM session_memory_pop(p_tenant, p_session, p_key, p_fingerprint, p_key_ttl,
            p_expected, p_default_ttl, p_inline);
    END IF;
END
$$;

CREATE FUNCTION session_memory_fenced_clear(
    p_tenant text, p_session text, p_expected bigint, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_revision bigint
) LANGUAGE plpgsql AS $$
BEGIN
    r_status := session_memory_lease_check(p_tenant, p_session, p_lease);
    IF r_status IS NULL THEN
        SELECT * INTO r_status, r_revision
        FROM session_memory_clear(p_tenant, p_session, p_expected, p_inline);
    END IF;
END
$$;

CREATE FUNCTION session_memory_fenced_replace(
    p_tenant text, p_session text, p_items text[], p_from bigint, p_max_items bigint,
    p_max_sessions bigint, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_ttl float8, p_default_ttl float8, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
BEGIN
    r_status := session_memory_lease_check(p_tenant, p_session, p_lease);
    IF r_status IS NULL THEN
        SELECT * INTO r_status, r_first, r_last, r_revision, r_held, r_kept, r_replay
        FROM session_memory_replace(p_tenant, p_session, p_items, p_from, p_max_items,
            p_max_sessions, p_key, p_fingerprint, p_key_ttl, p_expected, p_ttl,
            p_default_ttl, p_inline);
    END IF;
END
$$;

-- The source's lease: the fork writes the target, but it is the source's history.
CREATE FUNCTION session_memory_fenced_fork(
    p_tenant text, p_source text, p_target text, p_through bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint,
    p_default_ttl float8, p_inline bigint, p_max_items bigint, p_max_bytes bigint,
    p_lease bigint,
    OUT r_status text, OUT r_count bigint, OUT r_revision bigint, OUT r_replay text,
    OUT r_bytes bigint
) LANGUAGE plpgsql AS $$
BEGIN
    r_status := session_memory_lease_check(p_tenant, p_source, p_lease);
    IF r_status IS NULL THEN
        SELECT * INTO r_status, r_count, r_revision, r_replay, r_bytes
        FROM session_memory_fork(p_tenant, p_source, p_target, p_through, p_max_sessions,
            p_key, p_fingerprint, p_key_ttl, p_expected, p_default_ttl, p_inline,
            p_max_items, p_max_bytes);
    END IF;
END
$$;
"""

RUN_LEASES = _TABLE + _LEASE_FUNCTIONS + _FENCED_WRITES
