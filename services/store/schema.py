"""Versioned schema migrations. Append new versions; never edit one that has shipped."""
from __future__ import annotations

_V1 = [
    """
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,              -- Telegram user id
        username      TEXT,
        first_name    TEXT NOT NULL DEFAULT '',
        locale        TEXT,                             -- chosen in the bot; NULL = follow Telegram
        telegram_lang TEXT,
        balance_cents INTEGER NOT NULL DEFAULT 0,       -- cache of SUM(ledger), kept by a trigger
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    )
    """,
    "CREATE INDEX users_username ON users(username COLLATE NOCASE)",
    """
    CREATE TABLE coupons (
        id               INTEGER PRIMARY KEY,
        code             TEXT NOT NULL UNIQUE COLLATE NOCASE,
        kind             TEXT NOT NULL CHECK (kind IN ('percent', 'fixed')),
        value            INTEGER NOT NULL CHECK (value > 0),  -- percent, or USD cents
        max_uses         INTEGER CHECK (max_uses IS NULL OR max_uses > 0),
        used_count       INTEGER NOT NULL DEFAULT 0,           -- holds + redemptions
        min_amount_cents INTEGER NOT NULL DEFAULT 0,
        expires_at       INTEGER,
        active           INTEGER NOT NULL DEFAULT 1,
        created_by       INTEGER,
        created_at       INTEGER NOT NULL,
        CHECK (max_uses IS NULL OR used_count <= max_uses),
        CHECK (kind <> 'percent' OR value <= 100)
    )
    """,
    """
    CREATE TABLE deposits (
        id                 INTEGER PRIMARY KEY,
        user_id            INTEGER NOT NULL REFERENCES users(id),
        chat_id            INTEGER NOT NULL,
        gateway            TEXT NOT NULL,
        order_id           TEXT,                     -- the gateway's reference; NULL until created there
        status             TEXT NOT NULL CHECK (status IN
                               ('creating', 'pending', 'paid', 'expired', 'cancelled', 'failed')),
        coin               TEXT NOT NULL,
        network            TEXT NOT NULL,
        amount_cents       INTEGER NOT NULL CHECK (amount_cents > 0),  -- what the user asked for
        quoted_cents       INTEGER,                  -- the gateway's USD value of the deposit, if it said
        pay_amount         TEXT,                     -- exact crypto amount, Decimal as text
        pay_currency       TEXT,
        address            TEXT,
        payment_url        TEXT,
        expires_at         INTEGER,
        coupon_id          INTEGER REFERENCES coupons(id),
        gateway_coupon     TEXT,                     -- a code passed through to the gateway
        credited_cents     INTEGER,
        bonus_cents        INTEGER,
        txid               TEXT,
        failure_reason     TEXT,
        message_chat_id    INTEGER,                  -- the deposit card, edited as status changes
        message_id         INTEGER,
        check_failures     INTEGER NOT NULL DEFAULT 0,
        next_check_at      INTEGER,
        last_checked_at    INTEGER,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        paid_at            INTEGER,
        UNIQUE (gateway, order_id)
    )
    """,
    "CREATE INDEX deposits_user ON deposits(user_id, id DESC)",
    (
        "CREATE INDEX deposits_open ON deposits(status, next_check_at)"
        " WHERE status IN ('creating', 'pending', 'expired', 'cancelled')"
    ),
    """
    CREATE TABLE coupon_holds (
        id          INTEGER PRIMARY KEY,
        coupon_id   INTEGER NOT NULL REFERENCES coupons(id),
        user_id     INTEGER NOT NULL REFERENCES users(id),
        deposit_id  INTEGER NOT NULL UNIQUE REFERENCES deposits(id),
        state       TEXT NOT NULL CHECK (state IN ('held', 'redeemed')),
        bonus_cents INTEGER,
        created_at  INTEGER NOT NULL,
        UNIQUE (coupon_id, user_id)                  -- once per user, enforced by the database
    )
    """,
    """
    CREATE TABLE ledger (
        id              INTEGER PRIMARY KEY,
        user_id         INTEGER NOT NULL REFERENCES users(id),
        amount_cents    INTEGER NOT NULL CHECK (amount_cents <> 0),
        kind            TEXT NOT NULL CHECK (kind IN ('deposit', 'bonus', 'adjustment')),
        deposit_id      INTEGER REFERENCES deposits(id),
        idempotency_key TEXT NOT NULL UNIQUE,       -- the single-credit guarantee: one row per key, ever
        note            TEXT,
        actor_id        INTEGER,
        created_at      INTEGER NOT NULL
    )
    """,
    "CREATE INDEX ledger_user ON ledger(user_id, id DESC)",
    # The ledger is append-only, and the cached balance moves with it in the same statement.
    """
    CREATE TRIGGER ledger_keeps_balance AFTER INSERT ON ledger
    BEGIN
        UPDATE users SET balance_cents = balance_cents + NEW.amount_cents WHERE id = NEW.user_id;
    END
    """,
    "CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END",
    "CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END",
    """
    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL,
        chat_id         INTEGER NOT NULL,
        user_id         INTEGER,
        deposit_id      INTEGER,
        payload         TEXT NOT NULL DEFAULT '{}',
        dedupe_key      TEXT NOT NULL UNIQUE,       -- one notification per event, however often it is reported
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        sent_at         INTEGER
    )
    """,
    "CREATE INDEX notifications_due ON notifications(status, next_attempt_at) WHERE status = 'pending'",
    """
    CREATE TABLE fsm (
        key        TEXT PRIMARY KEY,
        state      TEXT,
        data       TEXT NOT NULL DEFAULT '{}',
        updated_at INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
]

# v2: every gateway callback, stored raw before it is judged, so an operator can audit what arrived.
_V2 = [
    """
    CREATE TABLE callbacks (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,               -- the endpoint: cryptomus, smartcloudpay
        received_at INTEGER NOT NULL,
        peer        TEXT,                        -- the TCP peer
        client_ip   TEXT,                        -- the client, behind a trusted proxy
        headers     TEXT NOT NULL DEFAULT '{}',  -- the headers of interest
        body        BLOB NOT NULL,               -- exactly the bytes received
        verdict     TEXT,                        -- how it was judged (see services/webhooks.py)
        detail      TEXT,
        order_id    TEXT,
        http_status INTEGER
    )
    """,
    "CREATE INDEX callbacks_order ON callbacks(source, order_id)",
]

# v3: how a deposit is paid: 'wallet' (an address and an exact amount) or a payment page link
# ('page': any coin on a hosted page, 'card': a bank card), which SMSOnline offers besides its wallet.
_V3 = [
    (
        "ALTER TABLE deposits ADD COLUMN method TEXT NOT NULL DEFAULT 'wallet'"
        " CHECK (method IN ('wallet', 'page', 'card'))"
    ),
]

# v4: the admin chat: who did what (append-only), the pending second taps, and payouts.
_V4 = [
    """
    CREATE TABLE admin_actions (
        id         INTEGER PRIMARY KEY,
        actor_id   INTEGER NOT NULL,
        actor_name TEXT NOT NULL DEFAULT '',
        action     TEXT NOT NULL,
        target     TEXT,
        details    TEXT NOT NULL DEFAULT '{}',
        reason     TEXT,
        created_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX admin_actions_recent ON admin_actions(id DESC)",
    "CREATE TRIGGER admin_actions_no_update BEFORE UPDATE ON admin_actions "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER admin_actions_no_delete BEFORE DELETE ON admin_actions "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    """
    CREATE TABLE confirmations (
        token      TEXT PRIMARY KEY,
        actor_id   INTEGER NOT NULL,
        action     TEXT NOT NULL,
        payload    TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        created_at INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE payouts (
        id           INTEGER PRIMARY KEY,
        reference    TEXT NOT NULL UNIQUE,
        actor_id     INTEGER NOT NULL,
        amount       TEXT NOT NULL,           -- coin units, Decimal as text
        usd_cents    INTEGER NOT NULL,         -- what counts against the caps
        coin         TEXT NOT NULL,
        network      TEXT NOT NULL,
        address      TEXT NOT NULL,
        status       TEXT NOT NULL,
        tx_hash      TEXT,
        detail       TEXT,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    )
    """,
]

# v5: what the admin chat looks up: deposits by creation time (/stats, /export) and by txid, address, order id.
_V5 = [
    "CREATE INDEX deposits_created ON deposits(created_at)",
    "CREATE INDEX deposits_txid ON deposits(txid) WHERE txid IS NOT NULL",
    "CREATE INDEX deposits_address ON deposits(address) WHERE address IS NOT NULL",
    "CREATE INDEX deposits_order ON deposits(order_id) WHERE order_id IS NOT NULL",
]

# v6: refused callbacks are not stored one by one (issue 8): a count per endpoint and reason, and the last few bodies.
_V6 = [
    """
    CREATE TABLE callback_refusals (
        source   TEXT NOT NULL,                 -- the endpoint
        reason   TEXT NOT NULL,                 -- inactive, bad_token, forbidden_source, bad_request, bad_signature
        refused  INTEGER NOT NULL,
        first_at INTEGER NOT NULL,
        last_at  INTEGER NOT NULL,
        last_ip  TEXT,
        samples  TEXT NOT NULL DEFAULT '[]',    -- JSON: the last few refused requests, bodies cut to 1 KiB
        PRIMARY KEY (source, reason)
    )
    """,
]

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _V5),
    (6, _V6),
]
