"""Migration 9 (released: never edited): replace and fork as PL/pgSQL functions.

As migration 7 (``v07_write_functions``) does for append, pop and clear: the whole
write (the idempotency lock, replay and record, the expiry purge, the revision
check, the limits, the write itself) runs inside one
``SELECT * FROM session_memory_<op>(...)``, reusing that migration's helpers, and a
refusal comes back as a status decided before anything changed (the store raises
the matching ``StoreError``).

Migration 10 (``v10_shared_blocks``) redefines both over shared helpers.
"""

from __future__ import annotations

__all__ = ["HISTORY_FUNCTIONS"]

HISTORY_FUNCTIONS = """
CREATE FUNCTION session_memory_replace(
    p_tenant text, p_session text, p_items text[], p_from bigint, p_max_items bigint,
    p_max_sessions bigint, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_ttl float8, p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := cardinality(p_items);
    v_now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_id bigint;
    v_last bigint;
    v_removed bigint;
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
        -- The row lock queues this session's writers: the statements below see
        -- every write committed while this one waited.
        SELECT id, item_count, kept_items, last_seq, revision
        INTO v_id, r_held, r_kept, v_last, r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        IF FOUND THEN
            IF p_expected IS NOT NULL AND (
                CASE WHEN p_expected = -1 THEN false ELSE r_revision <> p_expected END
            ) THEN
                r_status := 'precondition';
                RETURN;
            END IF;
            EXIT;
        END IF;
        r_held := 0;
        r_kept := 0;
        r_revision := 0;
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            r_status := 'precondition';
            RETURN;
        END IF;
        IF v_count = 0 THEN
            -- Nothing to replace and nothing to put: no session is made.
            EXIT;
        END IF;
        IF p_max_items IS NOT NULL AND v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        IF p_max_sessions > 0 THEN
            PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 1));
            IF (SELECT count(*) FROM sessions WHERE tenant = p_tenant
                AND (expires_at IS NULL OR expires_at > now())) >= p_max_sessions THEN
                r_status := 'sessions';
                RETURN;
            END IF;
        END IF;
        INSERT INTO sessions (tenant, session_id, created_at, updated_at, item_count, last_seq,
                              revision)
        VALUES (p_tenant, p_session, now(), now(), 0, 0,
                greatest(v_now_us, coalesce((SELECT revision FROM revision_floors
                                             WHERE tenant = p_tenant), 0) + 1))
        ON CONFLICT (tenant, session_id) DO NOTHING
        RETURNING id, last_seq, revision INTO v_id, v_last, r_revision;
        EXIT WHEN FOUND;
        -- Another writer created the session meanwhile: lock it and start over.
    END LOOP;
    IF v_id IS NOT NULL THEN
        -- Counted before deleting, so a refusal changes nothing.
        SELECT count(*) INTO v_removed FROM items
        WHERE session = v_id AND seq >= coalesce(p_from, 0);
        r_held := r_held - v_removed;
        IF p_max_items IS NOT NULL AND r_held + r_kept + v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        DELETE FROM items WHERE session = v_id AND seq >= coalesce(p_from, 0);
        -- Numbered above every seq the session gave: numbers never repeat.
        INSERT INTO items (session, seq, body)
        SELECT v_id, v_last + ordinality, body
        FROM unnest(p_items) WITH ORDINALITY AS batch(body, ordinality);
        UPDATE sessions SET
            item_count = r_held + v_count,
            last_seq = v_last + v_count,
            updated_at = clock_timestamp(),
            revision = greatest(revision + 1, v_now_us),
            ttl_seconds = coalesce(p_ttl, ttl_seconds),
            expires_at = CASE WHEN coalesce(p_ttl, ttl_seconds, p_default_ttl) > 0
                THEN clock_timestamp()
                     + make_interval(secs => coalesce(p_ttl, ttl_seconds, p_default_ttl))
            END
        WHERE id = v_id
        RETURNING revision INTO r_revision;
        IF v_count > 0 THEN
            r_first := v_last + 1;
            r_last := v_last + v_count;
        END IF;
    END IF;
    IF p_key IS NOT NULL THEN
        PERFORM session_memory_record(
            p_tenant, p_key, p_fingerprint,
            json_build_array(v_count, r_first, r_last, r_revision)::text, p_key_ttl,
            p_session, false);
    END IF;
    r_status := 'ok';
END
$$;

-- Statuses: ok (r_count items copied, r_revision: the new session's), replay,
-- inflight, mismatch, precondition (r_revision: the source's), missing (no source),
-- exists (the target), sessions (the tenant's session limit).
CREATE FUNCTION session_memory_fork(
    p_tenant text, p_source text, p_target text, p_through bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint,
    p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_count bigint, OUT r_revision bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_source bigint;
    v_ttl float8;
    v_metadata text;
    v_id bigint;
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO r_status, r_replay
        FROM session_memory_replay(p_tenant, p_key, p_fingerprint);
        IF r_status IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    PERFORM session_memory_purge(p_tenant, p_target, p_inline);
    -- FOR SHARE: writes to the source wait until the copy has committed.
    SELECT id, revision, ttl_seconds, metadata INTO v_source, r_revision, v_ttl, v_metadata
    FROM sessions WHERE tenant = p_tenant AND session_id = p_source
    AND (expires_at IS NULL OR expires_at > now()) FOR SHARE;
    IF NOT FOUND THEN
        r_status := 'missing';
        RETURN;
    END IF;
    IF p_expected IS NOT NULL AND (
        CASE WHEN p_expected = -1 THEN false ELSE r_revision <> p_expected END
    ) THEN
        r_status := 'precondition';
        RETURN;
    END IF;
    PERFORM 1 FROM sessions WHERE tenant = p_tenant AND session_id = p_target;
    IF FOUND THEN
        r_status := 'exists';
        RETURN;
    END IF;
    IF p_max_sessions > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 1));
        IF (SELECT count(*) FROM sessions WHERE tenant = p_tenant
            AND (expires_at IS NULL OR expires_at > now())) >= p_max_sessions THEN
            r_status := 'sessions';
            RETURN;
        END IF;
    END IF;
    INSERT INTO sessions (tenant, session_id, created_at, updated_at, item_count, last_seq,
                          revision, ttl_seconds, expires_at, metadata)
    VALUES (p_tenant, p_target, now(), now(), 0, 0,
            greatest(v_now_us, coalesce((SELECT revision FROM revision_floors
                                         WHERE tenant = p_tenant), 0) + 1),
            v_ttl,
            CASE WHEN coalesce(v_ttl, p_default_ttl) > 0
                 THEN now() + make_interval(secs => coalesce(v_ttl, p_default_ttl)) END,
            v_metadata)
    ON CONFLICT (tenant, session_id) DO NOTHING
    RETURNING id, revision INTO v_id, r_revision;
    IF NOT FOUND THEN
        r_status := 'exists';
        RETURN;
    END IF;
    -- One statement, so the copy never leaves the database.
    INSERT INTO items (session, seq, body)
    SELECT v_id, row_number() OVER (ORDER BY seq), body FROM items
    WHERE session = v_source AND seq <= p_through;
    GET DIAGNOSTICS r_count = ROW_COUNT;
    INSERT INTO session_labels
    SELECT tenant, key, value, v_id FROM session_labels WHERE session = v_source;
    UPDATE sessions SET item_count = r_count, last_seq = r_count WHERE id = v_id;
    IF p_key IS NOT NULL THEN
        PERFORM session_memory_record(
            p_tenant, p_key, p_fingerprint,
            json_build_array(r_count, CASE WHEN r_count > 0 THEN 1 END, nullif(r_count, 0),
                             r_revision)::text,
            p_key_ttl, p_target, false);
    END IF;
    r_status := 'ok';
END
$$;
"""
