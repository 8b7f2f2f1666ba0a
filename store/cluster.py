"""ClickHouse cluster DDL: the tables replicated per shard, read through Distributed tables.

A single server (or the embedded chdb) uses the ReplacingMergeTree tables of `store/schema.py`.
A cluster keeps each table's rows in ``{table}_local``, a ReplicatedReplacingMergeTree on every
replica of every shard, and serves ``{table}``, a Distributed table over them, to the loader and to
analysts. Rows are sharded by account (by meter where a table has no account), so one account's
rows live on one shard and ``FINAL`` deduplicates within it. Nothing here talks to ClickHouse:
``wattpay migrate --cluster NAME`` prints these statements for the operators to run.
"""

from __future__ import annotations

from store.schema import DAY, TABLES, TIMESTAMP, TableSpec, quote_identifier

TIME_COLUMNS = ("day", "ts", "start", "received_at")


def sharding_key(table: TableSpec) -> str:
    """The Distributed table's sharding expression: the account, else the table's first key."""
    names = table.column_names
    column = "account_id" if "account_id" in names else table.order_by[0]
    return f"cityHash64({quote_identifier(column)})"


def partition_key(table: TableSpec) -> str | None:
    """Monthly partitions on the table's time column, if it has one (old months drop cheaply).

    A table partitioned on one server too (``TableSpec.partition_by``) keeps that key.
    """
    if table.partition_by:
        return table.partition_by
    types = {c.name: c.type for c in table.columns}
    for name in TIME_COLUMNS:
        if types.get(name) in (DAY, TIMESTAMP):
            return f"toYYYYMM({quote_identifier(name)})"
    return None


def local_table_sql(table: TableSpec, cluster: str, database: str) -> str:
    """``CREATE TABLE … _local ON CLUSTER`` with a ReplicatedReplacingMergeTree engine."""
    columns = ",\n".join(f"    {quote_identifier(c.name)} {c.type}" for c in table.columns)
    path = f"'/clickhouse/tables/{{shard}}/{database}/{table.name}'"
    arguments = [path, "'{replica}'"]
    if table.version_column is not None:
        arguments.append(quote_identifier(table.version_column))
    keys = [quote_identifier(k) for k in table.order_by]
    order_by = keys[0] if len(keys) == 1 else "(" + ", ".join(keys) + ")"
    partition = partition_key(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(database)}."
        f"{quote_identifier(table.name + '_local')} ON CLUSTER {quote_identifier(cluster)}\n"
        f"(\n{columns}\n)\n"
        f"ENGINE = ReplicatedReplacingMergeTree({', '.join(arguments)})\n"
        + (f"PARTITION BY {partition}\n" if partition else "")
        + f"ORDER BY {order_by}"
    )


def distributed_table_sql(table: TableSpec, cluster: str, database: str) -> str:
    """``CREATE TABLE … ON CLUSTER … ENGINE = Distributed`` over the local tables."""
    db = quote_identifier(database)
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{quote_identifier(table.name)} "
        f"ON CLUSTER {quote_identifier(cluster)}\n"
        f"AS {db}.{quote_identifier(table.name + '_local')}\n"
        f"ENGINE = Distributed({quote_identifier(cluster)}, {db}, "
        f"{quote_identifier(table.name + '_local')}, {sharding_key(table)})"
    )


def cluster_statements(cluster: str, database: str = "wattpay") -> list[str]:
    """Every statement that builds wattpay's schema on a ClickHouse cluster, in order."""
    if not cluster or not database:
        raise ValueError("cluster and database names must not be empty")
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)} "
        f"ON CLUSTER {quote_identifier(cluster)}"
    ]
    for table in TABLES:
        statements.append(local_table_sql(table, cluster, database))
        statements.append(distributed_table_sql(table, cluster, database))
    return statements
