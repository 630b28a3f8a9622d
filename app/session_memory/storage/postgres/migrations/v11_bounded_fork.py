"""Migration 11: a fork bounded by what one fork may copy.

``session_memory_fork`` gains two arguments, the most items and the most bytes of
item text one fork may copy (0: no limit), and one status, ``too_big``
(``r_count`` items of ``r_bytes`` bytes would be copied). Both are counted under the
source's share lock, before anything is made, so a refused fork changes nothing.
``octet_length`` reads a stored value's size from its header: counting the bytes
does not read the items.

A new function of its own (an overload): the one of migration 10 stays, so a
replica not yet upgraded keeps working while others migrate.
"""

from __future__ import annotations

__all__ = ["BOUNDED_FORK"]

# Statuses as migration 9 says, and too_big (r_count, r_bytes).
BOUNDED_FORK = """
CREATE FUNCTION session_memory_fork(
    p_tenant text, p_source text, p_target text, p_through bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint,
    p_default_ttl float8, p_inline bigint, p_max_items bigint, p_max_bytes bigint,
    OUT r_status text, OUT r_count bigint, OUT r_revision bigint, OUT r_replay text,
    OUT r_bytes bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint := session_memory_now_us();
    v_source bigint;
    v_ttl float8;
    v_metadata text;
    v_id bigint;
BEGIN
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
