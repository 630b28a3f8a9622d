"""Migration 7 (released: never edited): appends, pops and clears as PL/pgSQL functions.

An append, a pop or a clear is one ``SELECT * FROM session_memory_<op>(...)``: the
function runs the whole write (idempotency lock and record, expiry purge, revision
check, limits, the write itself) inside the statement's own transaction, so the
server pays one network round trip and no BEGIN/COMMIT of its own. Refusals are
decided before anything is changed and come back as a status (the store raises the
matching ``StoreError``), so a refused write leaves nothing behind but the purge of an
expired session, which any write may do.

Each statement inside a function takes a fresh snapshot (READ COMMITTED), so a
statement after a row lock sees every write committed while it waited.

Migration 10 (``v10_shared_blocks``) redefines the write functions over shared helpers.
"""

from __future__ import annotations

__all__ = ["WRITE_FUNCTIONS"]

# Statuses the functions return (first column): what the store raises for each.
WRITE_FUNCTIONS = """
CREATE FUNCTION session_memory_forget(
    p_id bigint, p_tenant text, p_session text, p_revision bigint, p_items bigint,
    p_inline bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- A deleted session: its items (now, or by the sweep when there are many), its
    -- idempotency records, and its revision raises the tenant's floor.
    IF p_items <= p_inline THEN
        DELETE FROM items WHERE session = p_id;
    ELSE
        INSERT INTO retired_sessions (id) VALUES (p_id);
    END IF;
    DELETE FROM idempotency_keys WHERE tenant = p_tenant AND session_id = p_session;
    INSERT INTO revision_floors AS f (tenant, revision) VALUES (p_tenant, p_revision)
    ON CONFLICT (tenant) DO UPDATE SET revision = greatest(f.revision, excluded.revision);
END
$$;

CREATE FUNCTION session_memory_purge(p_tenant text, p_session text, p_inline bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint; v_revision bigint; v_items bigint;
BEGIN
    DELETE FROM sessions
    WHERE tenant = p_tenant AND session_id = p_session AND expires_at <= now()
    RETURNING id, revision, item_count INTO v_id, v_revision, v_items;
    IF FOUND THEN
        PERFORM session_memory_forget(v_id, p_tenant, p_session, v_revision, v_items, p_inline);
    END IF;
END
$$;

-- NULL when the key may run; else 'inflight', 'mismatch' or 'replay' with the result.
CREATE FUNCTION session_memory_replay(
    p_tenant text, p_key text, p_fingerprint text, OUT r_status text, OUT r_result text
) LANGUAGE plpgsql AS $$
DECLARE
    v_fingerprint text;
BEGIN
    -- Held until commit: a retry meanwhile, on any replica, is told it is in flight.
    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_tenant || chr(31) || p_key, 0)) THEN
        r_status := 'inflight';
        RETURN;
    END IF;
    SELECT fingerprint, result INTO v_fingerprint, r_result FROM idempotency_keys
    WHERE tenant = p_tenant AND key = p_key AND expires_at > now();
    IF FOUND THEN
        r_status := CASE WHEN v_fingerprint = p_fingerprint THEN 'replay' ELSE 'mismatch' END;
    END IF;
END
$$;

CREATE FUNCTION session_memory_record(
    p_tenant text, p_key text, p_fingerprint text, p_result text, p_ttl float8,
    p_session text, p_kept boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_session text; v_kept boolean;
BEGIN
    -- An expired record of this key goes first, releasing what it kept.
    DELETE FROM idempotency_keys WHERE tenant = p_tenant AND key = p_key
    RETURNING session_id, kept INTO v_session, v_kept;
    IF FOUND AND v_kept THEN
        UPDATE sessions SET kept_items = kept_items - 1
        WHERE tenant = p_tenant AND session_id = v_session;
    END IF;
    INSERT INTO idempotency_keys (tenant, key, fingerprint, result, expires_at, session_id, kept)
    VALUES (p_tenant, p_key, p_fingerprint, p_result, now() + make_interval(secs => p_ttl),
            p_session, p_kept);
    IF p_kept THEN
        UPDATE sessions SET kept_items = kept_items + 1
        WHERE tenant = p_tenant AND session_id = p_session;
    END IF;
END
$$;

-- Status: ok, replay (r_replay), inflight, mismatch, precondition (r_revision: the
-- session's), full (r_held, r_kept), sessions (the tenant's session limit).
CREATE FUNCTION session_memory_append(
    p_tenant text, p_session text, p_items text[], p_max_items bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint, p_ttl float8,
    p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := cardinality(p_items);
    v_now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_id bigint;
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO r_status, r_replay
        FROM session_memory_replay(p_tenant, p_key, p_fingerprint);
        IF r_status IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    PERFORM session_memory_purge(p_tenant, p_session, p_inline);
    LOOP
        -- The row lock queues concurrent writers of this session: contiguous seqs.
        SELECT id, item_count, kept_items, revision INTO v_id, r_held, r_kept, r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        IF FOUND THEN
            IF p_expected IS NOT NULL AND p_expected <> -1 AND p_expected <> r_revision THEN
                r_status := 'precondition';
                RETURN;
            END IF;
            IF p_max_items IS NOT NULL AND r_held + r_kept + v_count > p_max_items THEN
                r_status := 'full';
                RETURN;
            END IF;
            UPDATE sessions SET
                item_count = item_count + v_count,
                last_seq = last_seq + v_count,
                updated_at = clock_timestamp(),
                revision = greatest(revision + 1, v_now_us),
                ttl_seconds = coalesce(p_ttl, ttl_seconds),
                expires_at = CASE WHEN coalesce(p_ttl, ttl_seconds, p_default_ttl) > 0
                    THEN clock_timestamp()
                         + make_interval(secs => coalesce(p_ttl, ttl_seconds, p_default_ttl))
                END
            WHERE id = v_id
            RETURNING last_seq, revision INTO r_last, r_revision;
            EXIT;
        END IF;
        r_held := 0;
        r_kept := 0;
        r_revision := 0;
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            r_status := 'precondition';
            RETURN;
        END IF;
        IF p_max_items IS NOT NULL AND v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        IF p_max_sessions > 0 THEN
            -- New sessions of a tenant queue here, so two cannot take the last place.
            PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 1));
            IF (SELECT count(*) FROM sessions WHERE tenant = p_tenant
                AND (expires_at IS NULL OR expires_at > now())) >= p_max_sessions THEN
                r_status := 'sessions';
                RETURN;
            END IF;
        END IF;
        INSERT INTO sessions (tenant, session_id, created_at, updated_at, item_count, last_seq,
                              revision, ttl_seconds, expires_at)
        VALUES (p_tenant, p_session, now(), now(), v_count, v_count,
                greatest(v_now_us, coalesce((SELECT revision FROM revision_floors
                                             WHERE tenant = p_tenant), 0) + 1),
                p_ttl,
                CASE WHEN coalesce(p_ttl, p_default_ttl) > 0
                     THEN now() + make_interval(secs => coalesce(p_ttl, p_default_ttl)) END)
        ON CONFLICT (tenant, session_id) DO NOTHING
        RETURNING id, last_seq, revision INTO v_id, r_last, r_revision;
        EXIT WHEN FOUND;
        -- Another writer created the session meanwhile: lock it and start over.
    END LOOP;
    r_first := r_last - v_count + 1;
    INSERT INTO items (session, seq, body)
    SELECT v_id, r_first + ordinality - 1, body
    FROM unnest(p_items) WITH ORDINALITY AS batch(body, ordinality);
    IF p_key IS NOT NULL THEN
        PERFORM session_memory_record(
            p_tenant, p_key, p_fingerprint,
            json_build_array(v_count, r_first, r_last, r_revision)::text, p_key_ttl,
            p_session, false);
    END IF;
    r_status := 'ok';
END
$$;

-- Status: ok (r_item: the popped item, NULL when empty), replay, inflight, mismatch,
-- precondition (r_revision).
CREATE FUNCTION session_memory_pop(
    p_tenant text, p_session text, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_item text, OUT r_revision bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_id bigint;
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO r_status, r_replay
        FROM session_memory_replay(p_tenant, p_key, p_fingerprint);
        IF r_status IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    PERFORM session_memory_purge(p_tenant, p_session, p_inline);
    -- Lock first, in its own statement: the next one sees every pop and append
    -- committed while this waited, so each item goes to one popper.
    SELECT id, revision INTO v_id, r_revision
    FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
    r_revision := coalesce(r_revision, 0);
    IF p_expected IS NOT NULL AND (
        CASE WHEN p_expected = -1 THEN r_revision = 0 ELSE r_revision <> p_expected END
    ) THEN
        r_status := 'precondition';
        RETURN;
    END IF;
    IF v_id IS NOT NULL THEN
        DELETE FROM items
        WHERE session = v_id AND seq = (SELECT max(seq) FROM items WHERE session = v_id)
        RETURNING body INTO r_item;
        IF FOUND THEN
            UPDATE sessions SET
                item_count = item_count - 1,
                updated_at = clock_timestamp(),
                revision = greatest(revision + 1, v_now_us),
                expires_at = CASE WHEN coalesce(ttl_seconds, p_default_ttl) > 0
                    THEN clock_timestamp()
                         + make_interval(secs => coalesce(ttl_seconds, p_default_ttl))
                END
            WHERE id = v_id;
        END IF;
    END IF;
    IF p_key IS NOT NULL THEN
        PERFORM session_memory_record(
            p_tenant, p_key, p_fingerprint,
            CASE WHEN r_item IS NULL THEN '[]' ELSE json_build_array(r_item)::text END,
            p_key_ttl, p_session, r_item IS NOT NULL);
    END IF;
    r_status := 'ok';
END
$$;

-- Status: ok, precondition (r_revision).
CREATE FUNCTION session_memory_clear(
    p_tenant text, p_session text, p_expected bigint, p_inline bigint,
    OUT r_status text, OUT r_revision bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint; v_items bigint;
BEGIN
    PERFORM session_memory_purge(p_tenant, p_session, p_inline);
    IF p_expected IS NOT NULL THEN
        SELECT revision INTO r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        r_revision := coalesce(r_revision, 0);
        IF (CASE WHEN p_expected = -1 THEN r_revision = 0 ELSE r_revision <> p_expected END) THEN
            r_status := 'precondition';
            RETURN;
        END IF;
    END IF;
    DELETE FROM sessions WHERE tenant = p_tenant AND session_id = p_session
    RETURNING id, revision, item_count INTO v_id, r_revision, v_items;
    IF FOUND THEN
        -- A statement of its own: it sees items an append committed while we waited.
        PERFORM session_memory_forget(v_id, p_tenant, p_session, r_revision, v_items, p_inline);
    END IF;
    r_status := 'ok';
END
$$;
"""
