"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 13:09:39.460534
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.base


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The audit log is append-only for everyone: the database itself refuses UPDATE and DELETE on it. On
# SQLite, INSERT OR REPLACE is refused too (a BEFORE INSERT check that does not depend on the
# connection's recursive_triggers pragma). TRUNCATE and DROP bypass triggers on MariaDB: the grants in
# deploy/mysql-grants.sql keep the application's user to SELECT and INSERT on this table.
AUDIT_GUARD_NAMES = ("audit_log_no_update", "audit_log_no_delete", "audit_log_no_replace")
AUDIT_GUARDS = {
    True: (
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
        "WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ),
    False: (
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only'",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only'",
    ),
}


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=True),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('entity_type', sa.String(length=40), nullable=False),
    sa.Column('entity_id', sa.BigInteger(), nullable=True),
    sa.Column('context', domain.base.LongText(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_user_id'), ['user_id'], unique=False)

    op.create_table('change_feed',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('entity', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('scope', sa.BigInteger(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.Column('doc', domain.base.LongText(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_change_feed')),
    sa.UniqueConstraint('entity', 'entity_id', name=op.f('uq_change_feed_entity_entity_id'))
    )
    with op.batch_alter_table('change_feed', schema=None) as batch_op:
        batch_op.create_index('ix_change_feed_entity_seq', ['entity', 'seq'], unique=False)
        batch_op.create_index('ix_change_feed_scope_seq', ['scope', 'seq'], unique=False)

    op.create_table('counters',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_counters'))
    )
    op.create_table('depots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_depots')),
    sa.UniqueConstraint('code', name=op.f('uq_depots_code'))
    )
    op.create_table('equipment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('capacity_kg', sa.Numeric(precision=10, scale=2), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('deposit', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_equipment')),
    sa.UniqueConstraint('code', name=op.f('uq_equipment_code'))
    )
    op.create_table('login_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=150), nullable=False),
    sa.Column('client_addr', sa.String(length=64), nullable=False),
    sa.Column('at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_client_addr_at', ['client_addr', 'at'], unique=False)
        batch_op.create_index('ix_login_attempts_username_at', ['username', 'at'], unique=False)

    op.create_table('services',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('price', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_services')),
    sa.UniqueConstraint('code', name=op.f('uq_services_code'))
    )
    op.create_table('sync_applied',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=100), nullable=False),
    sa.Column('client_temp_id', sa.String(length=100), nullable=False),
    sa.Column('op', sa.String(length=40), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.BigInteger(), nullable=True),
    sa.Column('result', domain.base.LongText(), nullable=False),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_applied')),
    sa.UniqueConstraint('device_id', 'client_temp_id', name=op.f('uq_sync_applied_device_id_client_temp_id'))
    )
    op.create_table('trucks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('plate', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trucks')),
    sa.UniqueConstraint('plate', name=op.f('uq_trucks_plate'))
    )
    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=150), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint("role IN ('driver', 'admin')", name=op.f('ck_users_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('couch_local_docs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('db', sa.String(length=64), nullable=False),
    sa.Column('doc_id', sa.String(length=200), nullable=False),
    sa.Column('rev', sa.String(length=64), nullable=False),
    sa.Column('doc', domain.base.LongText(), nullable=False),
    sa.Column('updated_at', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_couch_local_docs_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_couch_local_docs')),
    sa.UniqueConstraint('user_id', 'db', 'doc_id', name=op.f('uq_couch_local_docs_user_id_db_doc_id'))
    )
    op.create_table('customers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=40), nullable=True),
    sa.Column('meter_rate', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('kg_rate', sa.Numeric(precision=12, scale=4), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_customers_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers'))
    )
    op.create_table('depot_stock',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('depot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('full', sa.Integer(), nullable=False),
    sa.Column('empty', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint('empty >= 0', name=op.f('ck_depot_stock_empty_not_negative')),
    sa.CheckConstraint('full >= 0', name=op.f('ck_depot_stock_full_not_negative')),
    sa.ForeignKeyConstraint(['depot_id'], ['depots.id'], name=op.f('fk_depot_stock_depot_id_depots')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_depot_stock_equipment_id_equipment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_depot_stock')),
    sa.UniqueConstraint('depot_id', 'equipment_id', name=op.f('uq_depot_stock_depot_id_equipment_id'))
    )
    op.create_table('devices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=100), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('first_seen', domain.base.UTCDateTime(), nullable=False),
    sa.Column('last_push_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('last_pull_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('last_pulled_seq', sa.BigInteger(), nullable=True),
    sa.Column('applied_count', sa.Integer(), nullable=False),
    sa.Column('duplicate_count', sa.Integer(), nullable=False),
    sa.Column('rejected_count', sa.Integer(), nullable=False),
    sa.Column('app_version', sa.String(length=40), nullable=True),
    sa.Column('clock_skew_ms', sa.BigInteger(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_devices_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
    sa.UniqueConstraint('device_id', name=op.f('uq_devices_device_id'))
    )
    op.create_table('distributions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=24), nullable=True),
    sa.Column('depot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('truck_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('driver_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('occurred_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('confirmed_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('cancelled_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'confirmed', 'cancelled')", name=op.f('ck_distributions_status')),
    sa.ForeignKeyConstraint(['depot_id'], ['depots.id'], name=op.f('fk_distributions_depot_id_depots')),
    sa.ForeignKeyConstraint(['driver_id'], ['users.id'], name=op.f('fk_distributions_driver_id_users')),
    sa.ForeignKeyConstraint(['truck_id'], ['trucks.id'], name=op.f('fk_distributions_truck_id_trucks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distributions')),
    sa.UniqueConstraint('number', name=op.f('uq_distributions_number'))
    )
    with op.batch_alter_table('distributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_distributions_driver_id'), ['driver_id'], unique=False)

    op.create_table('refresh_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.Column('issued_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('expires_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('used_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('replaced_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('jti', name=op.f('uq_refresh_tokens_jti'))
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_family'), ['family'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('sync_checkpoints',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sync_checkpoints_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_checkpoints')),
    sa.UniqueConstraint('user_id', 'name', name=op.f('uq_sync_checkpoints_user_id_name'))
    )
    op.create_table('sync_rejections',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=100), nullable=False),
    sa.Column('client_temp_id', sa.String(length=100), nullable=False),
    sa.Column('op', sa.String(length=40), nullable=False),
    sa.Column('payload', domain.base.LongText(), nullable=False),
    sa.Column('error_code', sa.String(length=40), nullable=False),
    sa.Column('error', domain.base.LongText(), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('resolved_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('resolved_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['resolved_by'], ['users.id'], name=op.f('fk_sync_rejections_resolved_by_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sync_rejections_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_rejections'))
    )
    with op.batch_alter_table('sync_rejections', schema=None) as batch_op:
        batch_op.create_index('ix_sync_rejections_device_id_id', ['device_id', 'id'], unique=False)
        batch_op.create_index('ix_sync_rejections_device_temp', ['device_id', 'client_temp_id'], unique=False)

    op.create_table('truck_stock',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('truck_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('full', sa.Integer(), nullable=False),
    sa.Column('empty', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint('empty >= 0', name=op.f('ck_truck_stock_empty_not_negative')),
    sa.CheckConstraint('full >= 0', name=op.f('ck_truck_stock_full_not_negative')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_truck_stock_equipment_id_equipment')),
    sa.ForeignKeyConstraint(['truck_id'], ['trucks.id'], name=op.f('fk_truck_stock_truck_id_trucks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_truck_stock')),
    sa.UniqueConstraint('truck_id', 'equipment_id', name=op.f('uq_truck_stock_truck_id_equipment_id'))
    )
    op.create_table('customer_prices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('service_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('price', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint('(equipment_id IS NULL) <> (service_id IS NULL)', name=op.f('ck_customer_prices_one_item')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_prices_customer_id_customers')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_customer_prices_equipment_id_equipment')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_customer_prices_service_id_services')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_prices')),
    sa.UniqueConstraint('customer_id', 'equipment_id', name=op.f('uq_customer_prices_customer_id_equipment_id')),
    sa.UniqueConstraint('customer_id', 'service_id', name=op.f('uq_customer_prices_customer_id_service_id'))
    )
    op.create_table('distribution_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('distribution_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('movement_type', sa.String(length=20), nullable=False),
    sa.Column('qty', sa.Integer(), nullable=False),
    sa.CheckConstraint("movement_type IN ('collection', 'empty_return')", name=op.f('ck_distribution_items_movement_type')),
    sa.CheckConstraint('qty > 0', name=op.f('ck_distribution_items_qty_positive')),
    sa.ForeignKeyConstraint(['distribution_id'], ['distributions.id'], name=op.f('fk_distribution_items_distribution_id_distributions')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_distribution_items_equipment_id_equipment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distribution_items'))
    )
    with op.batch_alter_table('distribution_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_distribution_items_distribution_id'), ['distribution_id'], unique=False)

    op.create_table('meters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('last_reading', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('last_reading_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_meters_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters')),
    sa.UniqueConstraint('serial', name=op.f('uq_meters_serial'))
    )
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_meters_customer_id'), ['customer_id'], unique=False)

    op.create_table('site_stock',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('on_site', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_site_stock_customer_id_customers')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_site_stock_equipment_id_equipment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_site_stock')),
    sa.UniqueConstraint('customer_id', 'equipment_id', name=op.f('uq_site_stock_customer_id_equipment_id'))
    )
    op.create_table('stock_adjustments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('place', sa.String(length=10), nullable=False),
    sa.Column('depot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('truck_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('full_delta', sa.Integer(), nullable=False),
    sa.Column('empty_delta', sa.Integer(), nullable=False),
    sa.Column('on_site_delta', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint("place IN ('depot', 'truck', 'site')", name=op.f('ck_stock_adjustments_place')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_stock_adjustments_customer_id_customers')),
    sa.ForeignKeyConstraint(['depot_id'], ['depots.id'], name=op.f('fk_stock_adjustments_depot_id_depots')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_stock_adjustments_equipment_id_equipment')),
    sa.ForeignKeyConstraint(['truck_id'], ['trucks.id'], name=op.f('fk_stock_adjustments_truck_id_trucks')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_stock_adjustments_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_adjustments'))
    )
    op.create_table('transactions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=24), nullable=True),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('truck_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('driver_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('occurred_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('created_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('confirmed_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('cancelled_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('meter_reading', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('usage', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('usage_amount', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('subtotal', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('gst', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('total', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'confirmed', 'cancelled')", name=op.f('ck_transactions_status')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_transactions_customer_id_customers')),
    sa.ForeignKeyConstraint(['driver_id'], ['users.id'], name=op.f('fk_transactions_driver_id_users')),
    sa.ForeignKeyConstraint(['truck_id'], ['trucks.id'], name=op.f('fk_transactions_truck_id_trucks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transactions')),
    sa.UniqueConstraint('number', name=op.f('uq_transactions_number'))
    )
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transactions_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transactions_driver_id'), ['driver_id'], unique=False)

    op.create_table('delivery_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('equipment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('qty', sa.Integer(), nullable=False),
    sa.Column('remaining_kg', sa.Numeric(precision=10, scale=2), nullable=True),
    sa.Column('unit_price', sa.Numeric(precision=12, scale=4), nullable=True),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.CheckConstraint("kind IN ('full_deliver', 'empty_return', 'half_return')", name=op.f('ck_delivery_lines_kind')),
    sa.CheckConstraint('qty > 0', name=op.f('ck_delivery_lines_qty_positive')),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], name=op.f('fk_delivery_lines_equipment_id_equipment')),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_delivery_lines_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_lines'))
    )
    with op.batch_alter_table('delivery_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_lines_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('invoices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=24), nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('driver_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('issued_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=False),
    sa.Column('customer_address', sa.Text(), nullable=False),
    sa.Column('customer_email', sa.String(length=254), nullable=True),
    sa.Column('subtotal', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('gst_rate', sa.Numeric(precision=5, scale=4), nullable=False),
    sa.Column('gst', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('total', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('amount_paid', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('printed_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('printed_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('emailed_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('emailed_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('paid_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('paid_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('generated', 'printed', 'emailed', 'paid')", name=op.f('ck_invoices_status')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_invoices_customer_id_customers')),
    sa.ForeignKeyConstraint(['driver_id'], ['users.id'], name=op.f('fk_invoices_driver_id_users')),
    sa.ForeignKeyConstraint(['emailed_by'], ['users.id'], name=op.f('fk_invoices_emailed_by_users')),
    sa.ForeignKeyConstraint(['paid_by'], ['users.id'], name=op.f('fk_invoices_paid_by_users')),
    sa.ForeignKeyConstraint(['printed_by'], ['users.id'], name=op.f('fk_invoices_printed_by_users')),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_invoices_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_invoices_transaction_id'))
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoices_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invoices_driver_id'), ['driver_id'], unique=False)

    op.create_table('meter_readings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('meter_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reading', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('previous_reading', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('usage', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('occurred_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('recorded_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('driver_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_modified', domain.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_meter_readings_customer_id_customers')),
    sa.ForeignKeyConstraint(['driver_id'], ['users.id'], name=op.f('fk_meter_readings_driver_id_users')),
    sa.ForeignKeyConstraint(['meter_id'], ['meters.id'], name=op.f('fk_meter_readings_meter_id_meters')),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_meter_readings_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meter_readings'))
    )
    with op.batch_alter_table('meter_readings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_meter_readings_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_meter_readings_driver_id'), ['driver_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_meter_readings_meter_id'), ['meter_id'], unique=False)

    op.create_table('service_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('service_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('qty', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.CheckConstraint('qty > 0', name=op.f('ck_service_lines_qty_positive')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_service_lines_service_id_services')),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_service_lines_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_lines'))
    )
    with op.batch_alter_table('service_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_lines_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('invoice_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('occurred_at', domain.base.UTCDateTime(), nullable=True),
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_invoice_events_actor_id_users')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_events_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_events'))
    )
    with op.batch_alter_table('invoice_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_events_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('invoice_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('qty', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.CheckConstraint("kind IN ('usage', 'delivery', 'empty_return', 'half_return', 'service')", name=op.f('ck_invoice_lines_kind')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_lines_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_lines'))
    )
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_lines_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('occurred_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('recorded_at', domain.base.UTCDateTime(), nullable=False),
    sa.Column('recorded_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('device_id', sa.String(length=100), nullable=True),
    sa.CheckConstraint("method IN ('cash', 'cheque', 'paynow', 'bank_transfer')", name=op.f('ck_payments_method')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payments_amount_positive')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_payments_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_payments_recorded_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_invoice_id'), ['invoice_id'], unique=False)

    op.bulk_insert(
        sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
        [{"name": "audit", "value": 0}, {"name": "feed", "value": 0}],
    )
    for statement in AUDIT_GUARDS[op.get_bind().dialect.name == "sqlite"]:
        op.execute(statement)



def downgrade() -> None:
    for name in AUDIT_GUARD_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_invoice_id'))

    op.drop_table('payments')
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_lines_invoice_id'))

    op.drop_table('invoice_lines')
    with op.batch_alter_table('invoice_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_events_invoice_id'))

    op.drop_table('invoice_events')
    with op.batch_alter_table('service_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_lines_transaction_id'))

    op.drop_table('service_lines')
    with op.batch_alter_table('meter_readings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_meter_readings_meter_id'))
        batch_op.drop_index(batch_op.f('ix_meter_readings_driver_id'))
        batch_op.drop_index(batch_op.f('ix_meter_readings_customer_id'))

    op.drop_table('meter_readings')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoices_driver_id'))
        batch_op.drop_index(batch_op.f('ix_invoices_customer_id'))

    op.drop_table('invoices')
    with op.batch_alter_table('delivery_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_lines_transaction_id'))

    op.drop_table('delivery_lines')
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transactions_driver_id'))
        batch_op.drop_index(batch_op.f('ix_transactions_customer_id'))

    op.drop_table('transactions')
    op.drop_table('stock_adjustments')
    op.drop_table('site_stock')
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_meters_customer_id'))

    op.drop_table('meters')
    with op.batch_alter_table('distribution_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distribution_items_distribution_id'))

    op.drop_table('distribution_items')
    op.drop_table('customer_prices')
    op.drop_table('truck_stock')
    with op.batch_alter_table('sync_rejections', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_rejections_device_temp')
        batch_op.drop_index('ix_sync_rejections_device_id_id')

    op.drop_table('sync_rejections')
    op.drop_table('sync_checkpoints')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_user_id'))
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_family'))

    op.drop_table('refresh_tokens')
    with op.batch_alter_table('distributions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distributions_driver_id'))

    op.drop_table('distributions')
    op.drop_table('devices')
    op.drop_table('depot_stock')
    op.drop_table('customers')
    op.drop_table('couch_local_docs')
    op.drop_table('users')
    op.drop_table('trucks')
    op.drop_table('sync_applied')
    op.drop_table('services')
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_username_at')
        batch_op.drop_index('ix_login_attempts_client_addr_at')

    op.drop_table('login_attempts')
    op.drop_table('equipment')
    op.drop_table('depots')
    op.drop_table('counters')
    with op.batch_alter_table('change_feed', schema=None) as batch_op:
        batch_op.drop_index('ix_change_feed_scope_seq')
        batch_op.drop_index('ix_change_feed_entity_seq')

    op.drop_table('change_feed')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_user_id'))

    op.drop_table('audit_log')
