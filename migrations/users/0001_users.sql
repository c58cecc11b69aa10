-- Accounts, profiles and sessions (the original schema, DESIGN §4/§6).
CREATE TABLE users (
    id              uuid        PRIMARY KEY,
    email           text        NOT NULL,
    password_hash   text        NOT NULL,
    first_name      text        NOT NULL,
    last_name       text        NOT NULL,
    phone           text,
    date_of_birth   date,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_login      timestamptz,
    email_verified  boolean     NOT NULL DEFAULT false,
    account_status  text        NOT NULL DEFAULT 'active'
                    CHECK (account_status IN ('active', 'suspended', 'deleted')),
    role            text        NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
    -- Stored trimmed and lower-cased; the check keeps anything else out.
    CONSTRAINT users_email_format CHECK (email = lower(btrim(email)) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$')
);
CREATE UNIQUE INDEX users_email_unique ON users (email);

CREATE TABLE user_profiles (
    user_id     uuid  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    avatar_url  text,
    bio         text,
    preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    address     jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_sessions (
    id            bigserial   PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- sha256 of the token's jti: the id itself is never stored.
    token_id_hash text        NOT NULL UNIQUE,
    device_info   text,
    ip_address    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX user_sessions_user ON user_sessions (user_id) WHERE revoked_at IS NULL;

CREATE FUNCTION touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER user_profiles_touch_updated_at BEFORE UPDATE ON user_profiles
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
