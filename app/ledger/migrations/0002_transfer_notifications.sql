-- Expand-only: every committed transfer is announced on the `ledger_transfers` channel.
-- pg_notify inside the inserting transaction is delivered only if it commits, and in
-- commit order. The payload stays far below Postgres' 8000-byte limit (~300 bytes).
CREATE FUNCTION ledger_notify_transfer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'ledger_transfers',
        json_build_object(
            'id', NEW.id,
            'from_account_id', NEW.from_account_id,
            'to_account_id', NEW.to_account_id,
            'amount', NEW.amount,
            'currency', NEW.currency,
            'created_at', NEW.created_at,
            'origin', current_setting('application_name')
        )::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER transfers_notify
    AFTER INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_notify_transfer();
