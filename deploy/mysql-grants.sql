-- Privileges of the application's MariaDB user (run as root, after the schema is migrated).
--
-- The audit log is append-only for everyone: its triggers refuse UPDATE and DELETE (and REPLACE, which
-- MariaDB runs as a DELETE plus an INSERT), but TRUNCATE and DROP are DDL and bypass triggers, and a user
-- with the TRIGGER privilege could drop the triggers. So the application's user gets SELECT and INSERT on
-- `audit_log` and nothing else there: no UPDATE, DELETE, DROP (TRUNCATE needs DROP), ALTER or TRIGGER.
-- MariaDB privileges only add up (a table-level grant cannot take away a database-level one), hence one
-- grant per table and no `lpg`.* grant at all.
--
-- Migrations (`python server.py` migrates before serving) need DDL: run them as a separate owner account
-- (`lpg_owner` below, or root), and serve as `lpg` with `python server.py --no-migrate --no-demo`.
-- Every table the models define must appear here: tests/audit/test_integration_grants.py checks it.
--
-- Replace the password; `lpg` is the database name used in the README.

CREATE USER IF NOT EXISTS 'lpg'@'%' IDENTIFIED BY 'change-me';
CREATE USER IF NOT EXISTS 'lpg_owner'@'localhost' IDENTIFIED BY 'change-me-too';
GRANT ALL PRIVILEGES ON `lpg`.* TO 'lpg_owner'@'localhost';

-- The black box: read and append, nothing more.
GRANT SELECT, INSERT ON `lpg`.`audit_log` TO 'lpg'@'%';

-- The schema revision (health check).
GRANT SELECT ON `lpg`.`alembic_version` TO 'lpg'@'%';

-- Everything else the application reads and writes.
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`change_feed` TO 'lpg'@'%';
-- kept up to date by triggers on change_feed (pending counts for pulls)
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`change_feed_counts` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`couch_local_docs` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`counters` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`customer_prices` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`customers` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`delivery_lines` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`depot_stock` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`depots` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`devices` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`distribution_items` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`distributions` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`email_outbox` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`equipment` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`invoice_events` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`invoice_lines` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`invoices` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`login_attempts` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`meter_readings` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`meters` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`payments` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`refresh_tokens` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`service_lines` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`services` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`site_stock` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`stock_adjustments` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`sync_applied` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`sync_checkpoints` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`sync_rejections` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`transactions` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`truck_stock` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`trucks` TO 'lpg'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `lpg`.`users` TO 'lpg'@'%';
