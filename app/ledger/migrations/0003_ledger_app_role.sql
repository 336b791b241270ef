-- Expand-only: `ledger_app`, the least-privilege role ledger's pods connect as, so they no
-- longer run as the master user (the migration Job still does: it owns the schema).
-- Releases that still connect as the master user are unaffected. Every statement can run
-- again, and the role is cluster-wide: another database's migration may have made it.
-- The role gets no password here: on RDS it logs in with IAM tokens (rds_iam, below);
-- elsewhere the operator sets one (ALTER ROLE ledger_app PASSWORD ...) and rotates it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_app') THEN
        CREATE ROLE ledger_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- a migration of another database on this server created it at the same moment
END
$$;

-- RDS: IAM database authentication needs membership of rds_iam (absent elsewhere).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO ledger_app;
    END IF;
END
$$;

-- Exactly what ledger does: it reads the schema version, creates accounts and moves their
-- balances, and appends transfers. No DELETE, no TRUNCATE, no DDL (it owns nothing). LISTEN
-- needs no grant; the notify trigger's function runs as the inserting session (pg_notify
-- and EXECUTE on functions are PUBLIC's by default).
GRANT SELECT ON schema_migrations TO ledger_app;
GRANT SELECT, INSERT, UPDATE ON accounts TO ledger_app;
GRANT SELECT, INSERT ON transfers TO ledger_app;

-- The database and schema, and default privileges: tables and sequences that later
-- migrations create (as this migrating role, in this schema) are usable by the app
-- without another GRANT.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ledger_app', current_database());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ledger_app', current_schema());
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE ON TABLES TO ledger_app',
        current_schema()
    );
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO ledger_app',
        current_schema()
    );
END
$$;
