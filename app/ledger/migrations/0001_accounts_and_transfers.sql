-- Accounts hold a balance in minor units (cents); the database refuses a negative one.
CREATE TABLE accounts (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency    char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance     bigint      NOT NULL CHECK (balance >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The transfer log: one row per committed transfer, written in the same transaction as
-- the debit and the credit. The idempotency key makes a retried request a no-op.
CREATE TABLE transfers (
    id               uuid        PRIMARY KEY,
    idempotency_key  text        NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     text        NOT NULL,
    from_account_id  uuid        NOT NULL REFERENCES accounts (id),
    to_account_id    uuid        NOT NULL REFERENCES accounts (id),
    amount           bigint      NOT NULL CHECK (amount > 0),
    currency         char(3)     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (from_account_id <> to_account_id)
);

CREATE INDEX transfers_from_account_idx ON transfers (from_account_id);
CREATE INDEX transfers_to_account_idx ON transfers (to_account_id);
