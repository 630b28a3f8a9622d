"""Migration 14: the run lease check inside the fenced write functions, not around them.

Migration 12 fenced each write with a wrapper: ``session_memory_fenced_*`` called
``session_memory_lease_check``, then the write function. Measured, the calls cost
more than the check did: PL/pgSQL runs a nested ``SELECT * INTO ... FROM f(...)``
through a query executor of its own, and the check function ran its lock the same
way (``PERFORM``). Here each fenced function is redefined (``CREATE OR REPLACE``:
same name, arguments and results) with the body of the write it wrapped (migrations
10 and 11) and the check at its start, as statements of that body (``_check``): the
lock an expression, which PL/pgSQL evaluates without an executor, then the read of
the lease, a statement after the lock so it sees every change committed while it
waited. Refusals, their order (the check before a keyed retry's replay) and results
are the wrappers' own.

Why the bodies are written out again: the saving is the nested call, so the fenced
function has to be the write itself. From here on, a change to a write is made to its
fenced function. The unfenced functions of migrations 10 and 11 stay as they were,
for replicas from before migration 12; nothing calls them otherwise. Replicas of the
previous release call the fenced functions by the same signatures, so they keep
working, faster, as soon as this has run.

``session_memory_lease_check``, which a metadata patch calls in a statement of its
own, takes the same text, so the check is written once.
"""

from __future__ import annotations

__all__ = ["INLINE_FENCE"]


def _check(session: str, token: str) -> str:
    """The lease check as statements of a PL/pgSQL body, ``session`` and ``token`` its
    arguments: ``r_status`` NULL (the write may go on), ``lease_lost`` or ``leased``."""
    return f"""
    -- The lock an expression, not PERFORM: evaluated without a query executor. The
    -- read, a statement after it, sees every lease change committed while it waited.
    IF pg_advisory_xact_lock_shared(session_memory_lease_key(p_tenant, {session})) IS NULL THEN
    END IF;
    SELECT CASE WHEN {token} IS NULL THEN CASE WHEN refuse_unleased THEN 'leased' END
                WHEN token <> {token} THEN 'lease_lost' END
    INTO r_status FROM session_leases
    WHERE tenant = p_tenant AND session_id = {session} AND expires_at > clock_timestamp();
    IF NOT FOUND AND {token} IS NOT NULL THEN
        r_status := 'lease_lost';
    END IF;"""


def _fence(session: str) -> str:
    """A write function's opening: the check of the lease ``p_lease`` carries, for the
    session named by argument ``session``; a refusal returns."""
    stop = """
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;"""
    return _check(session, "p_lease") + stop


_LEASE_CHECK = f"""
CREATE OR REPLACE FUNCTION session_memory_lease_check(
    p_tenant text, p_session text, p_token bigint
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r_status text;
BEGIN{_check("p_session", "p_token")}
    RETURN r_status;
END
$$;
"""

# Statuses as migration 7 says (ok, replay, inflight, mismatch, precondition, full,
# sessions), and lease_lost or leased.
_APPEND = f"""
CREATE OR REPLACE FUNCTION session_memory_fenced_append(
    p_tenant text, p_session text, p_items text[], p_max_items bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint, p_ttl float8,
    p_default_ttl float8, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := cardinality(p_items);
    v_now_us bigint;
    v_id bigint;
BEGIN{_fence("p_session")}
    v_now_us := session_memory_now_us();
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_session, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    LOOP
        -- The row lock queues concurrent writers of this session: contiguous seqs.
        SELECT id, item_count, kept_items, revision INTO v_id, r_held, r_kept, r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        IF NOT FOUND THEN
            r_held := 0;
            r_kept := 0;
            r_revision := 0;
        END IF;
        IF session_memory_stale(p_expected, r_revision) THEN
            r_status := 'precondition';
            RETURN;
        END IF;
        IF p_max_items IS NOT NULL AND r_held + r_kept + v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        IF v_id IS NOT NULL THEN
            SELECT * INTO r_last, r_revision
            FROM session_memory_renew(v_id, v_count, v_count, p_ttl, p_default_ttl, v_now_us);
            EXIT;
        END IF;
        IF session_memory_tenant_full(p_tenant, p_max_sessions) THEN
            r_status := 'sessions';
            RETURN;
        END IF;
        SELECT * INTO v_id, r_revision FROM session_memory_create(
            p_tenant, p_session, v_count, p_ttl, p_default_ttl, NULL, v_now_us);
        r_last := v_count;
        EXIT WHEN v_id IS NOT NULL;
        -- Another writer created the session meanwhile: lock it and start over.
    END LOOP;
    r_first := r_last - v_count + 1;
    INSERT INTO items (session, seq, body)
    SELECT v_id, r_first + ordinality - 1, body
    FROM unnest(p_items) WITH ORDINALITY AS batch(body, ordinality);
    PERFORM session_memory_record_append(
        p_tenant, p_key, p_fingerprint, p_key_ttl, p_session,
        v_count, r_first, r_last, r_revision);
    r_status := 'ok';
END
$$;
"""

# Statuses: ok (r_item: the popped item, NULL when empty), replay, inflight, mismatch,
# precondition (r_revision), lease_lost, leased.
_POP = f"""
CREATE OR REPLACE FUNCTION session_memory_fenced_pop(
    p_tenant text, p_session text, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_default_ttl float8, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_item text, OUT r_revision bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint;
    v_id bigint;
BEGIN{_fence("p_session")}
    v_now_us := session_memory_now_us();
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_session, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    -- Lock first, in its own statement: the next one sees every pop and append
    -- committed while this waited, so each item goes to one popper.
    SELECT id, revision INTO v_id, r_revision
    FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
    r_revision := coalesce(r_revision, 0);
    IF session_memory_stale(p_expected, r_revision) THEN
        r_status := 'precondition';
        RETURN;
    END IF;
    IF v_id IS NOT NULL THEN
        DELETE FROM items
        WHERE session = v_id AND seq = (SELECT max(seq) FROM items WHERE session = v_id)
        RETURNING body INTO r_item;
        IF FOUND THEN
            PERFORM session_memory_renew(v_id, -1, 0, NULL, p_default_ttl, v_now_us);
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
"""

# Statuses: ok, precondition (r_revision), lease_lost, leased.
_CLEAR = f"""
CREATE OR REPLACE FUNCTION session_memory_fenced_clear(
    p_tenant text, p_session text, p_expected bigint, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_revision bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint; v_items bigint;
BEGIN{_fence("p_session")}
    PERFORM session_memory_purge(p_tenant, p_session, p_inline);
    IF p_expected IS NOT NULL THEN
        SELECT revision INTO r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        r_revision := coalesce(r_revision, 0);
        IF session_memory_stale(p_expected, r_revision) THEN
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

# Statuses as migration 9 says (ok, replay, inflight, mismatch, precondition, full:
# r_held the items left after the replace, sessions), and lease_lost or leased.
_REPLACE = f"""
CREATE OR REPLACE FUNCTION session_memory_fenced_replace(
    p_tenant text, p_session text, p_items text[], p_from bigint, p_max_items bigint,
    p_max_sessions bigint, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_ttl float8, p_default_ttl float8, p_inline bigint, p_lease bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := cardinality(p_items);
    v_now_us bigint;
    v_id bigint;
    v_last bigint;
    v_removed bigint;
BEGIN{_fence("p_session")}
    v_now_us := session_memory_now_us();
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_session, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    LOOP
        -- The row lock queues this session's writers: the statements below see
        -- every write committed while this one waited.
        SELECT id, item_count, kept_items, last_seq, revision
        INTO v_id, r_held, r_kept, v_last, r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        IF NOT FOUND THEN
            r_held := 0;
            r_kept := 0;
            r_revision := 0;
        END IF;
        IF session_memory_stale(p_expected, r_revision) THEN
            r_status := 'precondition';
            RETURN;
        END IF;
        -- A missing session with nothing to put in it is not made.
        EXIT WHEN v_id IS NOT NULL OR v_count = 0;
        IF p_max_items IS NOT NULL AND v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        IF session_memory_tenant_full(p_tenant, p_max_sessions) THEN
            r_status := 'sessions';
            RETURN;
        END IF;
        -- Made empty (the write below fills it), its expiry set by that write.
        SELECT * INTO v_id, r_revision
        FROM session_memory_create(p_tenant, p_session, 0, NULL, NULL, NULL, v_now_us);
        v_last := 0;
        EXIT WHEN v_id IS NOT NULL;
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
        SELECT * INTO r_last, r_revision FROM session_memory_renew(
            v_id, v_count - v_removed, v_count, p_ttl, p_default_ttl, v_now_us);
        IF v_count > 0 THEN
            r_first := v_last + 1;
        ELSE
            r_last := NULL;
        END IF;
    END IF;
    PERFORM session_memory_record_append(
        p_tenant, p_key, p_fingerprint, p_key_ttl, p_session,
        v_count, r_first, r_last, r_revision);
    r_status := 'ok';
END
$$;
"""

# The source's lease: the fork writes the target, but it is the source's history.
# Statuses as migrations 9 and 11 say (ok, replay, inflight, mismatch, precondition,
# missing, exists, sessions, too_big), and lease_lost or leased.
_FORK = f"""
CREATE OR REPLACE FUNCTION session_memory_fenced_fork(
    p_tenant text, p_source text, p_target text, p_through bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint,
    p_default_ttl float8, p_inline bigint, p_max_items bigint, p_max_bytes bigint,
    p_lease bigint,
    OUT r_status text, OUT r_count bigint, OUT r_revision bigint, OUT r_replay text,
    OUT r_bytes bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint;
    v_source bigint;
    v_ttl float8;
    v_metadata text;
    v_id bigint;
BEGIN{_fence("p_source")}
    v_now_us := session_memory_now_us();
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_target, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    -- FOR SHARE: writes to the source wait until the copy has committed.
    SELECT id, revision, ttl_seconds, metadata INTO v_source, r_revision, v_ttl, v_metadata
    FROM sessions WHERE tenant = p_tenant AND session_id = p_source
    AND (expires_at IS NULL OR expires_at > now()) FOR SHARE;
    IF NOT FOUND THEN
        r_status := 'missing';
        RETURN;
    END IF;
    IF session_memory_stale(p_expected, r_revision) THEN
        r_status := 'precondition';
        RETURN;
    END IF;
    PERFORM 1 FROM sessions WHERE tenant = p_tenant AND session_id = p_target;
    IF FOUND THEN
        r_status := 'exists';
        RETURN;
    END IF;
    -- The count first: a fork of too many items is refused without summing bytes.
    IF p_max_items > 0 THEN
        SELECT count(*) INTO r_count FROM items WHERE session = v_source AND seq <= p_through;
        IF r_count > p_max_items THEN
            r_status := 'too_big';
            RETURN;
        END IF;
    END IF;
    IF p_max_bytes > 0 THEN
        SELECT coalesce(sum(octet_length(body)), 0) INTO r_bytes
        FROM items WHERE session = v_source AND seq <= p_through;
        IF r_bytes > p_max_bytes THEN
            r_status := 'too_big';
            RETURN;
        END IF;
    END IF;
    IF session_memory_tenant_full(p_tenant, p_max_sessions) THEN
        r_status := 'sessions';
        RETURN;
    END IF;
    SELECT * INTO v_id, r_revision FROM session_memory_create(
        p_tenant, p_target, 0, v_ttl, p_default_ttl, v_metadata, v_now_us);
    IF v_id IS NULL THEN
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
    PERFORM session_memory_record_append(
        p_tenant, p_key, p_fingerprint, p_key_ttl, p_target,
        r_count, CASE WHEN r_count > 0 THEN 1 END, nullif(r_count, 0), r_revision);
    r_status := 'ok';
END
$$;
"""

INLINE_FENCE = _LEASE_CHECK + _APPEND + _POP + _CLEAR + _REPLACE + _FORK
