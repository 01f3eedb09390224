"""Catalog metadata through the real ADBC driver: get_info (GetSqlInfo),
get_objects at every depth with filters (GetCatalogs, GetDbSchemas,
GetTables with include_schema and column metadata), table types, schemas."""

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import Server


@pytest.fixture(scope="module")
def meta_conn(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("meta")).start()
    c = s.connect()
    with c.cursor() as cur:
        cur.execute(
            "CREATE TABLE alpha_docs (id BIGINT NOT NULL, title VARCHAR, price DOUBLE, "
            "v FLOAT[4], h FLOAT16[2], PRIMARY KEY (id))"
        )
        cur.execute("CREATE TABLE alpha_items (sku VARCHAR NOT NULL, qty INTEGER, PRIMARY KEY (sku))")
        cur.execute("CREATE TABLE beta (id BIGINT NOT NULL, vec FLOAT[3], PRIMARY KEY (id))")
    yield c
    c.close()
    s.stop()


def test_get_info_names_the_server(meta_conn):
    info = meta_conn.adbc_get_info()
    assert info["vendor_name"] == "quiver"
    assert info["vendor_version"]
    assert info["vendor_arrow_version"] == "1.5"
    assert info["driver_name"]


def _objects(conn, **kw):
    return conn.adbc_get_objects(**kw).read_all().to_pylist()


def test_get_objects_at_every_depth(meta_conn):
    cats = _objects(meta_conn, depth="catalogs")
    assert [c["catalog_name"] for c in cats] == ["quiver"]
    assert not cats[0]["catalog_db_schemas"]

    schemas = _objects(meta_conn, depth="db_schemas")
    assert [s["db_schema_name"] for s in schemas[0]["catalog_db_schemas"]] == ["public"]
    assert not schemas[0]["catalog_db_schemas"][0]["db_schema_tables"]

    tables = _objects(meta_conn, depth="tables")[0]["catalog_db_schemas"][0]["db_schema_tables"]
    names = [t["table_name"] for t in tables]
    assert names == sorted(names)
    assert {"alpha_docs", "alpha_items", "beta"} <= set(names)
    assert all(t["table_type"] == "TABLE" for t in tables)
    assert all(not t["table_columns"] for t in tables)

    full = _objects(meta_conn, depth="all", table_name_filter="alpha_docs")
    (t,) = full[0]["catalog_db_schemas"][0]["db_schema_tables"]
    cols = {c["column_name"]: c for c in t["table_columns"]}
    assert [c["column_name"] for c in t["table_columns"]] == ["id", "title", "price", "v", "h"]
    assert [c["ordinal_position"] for c in t["table_columns"]] == [1, 2, 3, 4, 5]
    assert cols["id"]["xdbc_type_name"] == "BIGINT"
    assert cols["id"]["xdbc_data_type"] == -5  # BIGINT
    assert cols["id"]["xdbc_is_autoincrement"] is False
    assert cols["title"]["xdbc_type_name"] == "VARCHAR"
    assert cols["title"]["xdbc_data_type"] == 12
    assert cols["price"]["xdbc_type_name"] == "DOUBLE"
    assert cols["v"]["xdbc_type_name"] == "FLOAT[4]"
    assert cols["h"]["xdbc_type_name"] == "FLOAT16[2]"


def test_get_objects_filters(meta_conn):
    def table_names(**kw):
        out = _objects(meta_conn, depth="tables", **kw)
        return [
            t["table_name"]
            for c in out
            for s in c["catalog_db_schemas"] or []
            for t in s["db_schema_tables"] or []
        ]

    assert table_names(table_name_filter="alpha%") == ["alpha_docs", "alpha_items"]
    assert table_names(table_name_filter="alpha\\_i%") == ["alpha_items"]
    assert table_names(table_name_filter="_eta") == ["beta"]
    assert table_names(table_name_filter="nothing%") == []
    assert table_names(table_types_filter=["VIEW"]) == []
    assert "beta" in table_names(table_types_filter=["TABLE"])
    assert table_names(db_schema_filter="pub%", table_name_filter="beta") == ["beta"]
    assert table_names(db_schema_filter="other") == []
    assert table_names(catalog_filter="quiver", table_name_filter="beta") == ["beta"]
    assert _objects(meta_conn, depth="tables", catalog_filter="elsewhere") == []

    cols = _objects(meta_conn, depth="columns", table_name_filter="alpha_docs", column_name_filter="%i%")
    (t,) = cols[0]["catalog_db_schemas"][0]["db_schema_tables"]
    assert [c["column_name"] for c in t["table_columns"]] == ["id", "title", "price"]


def test_table_types_and_schemas(meta_conn):
    assert meta_conn.adbc_get_table_types() == ["TABLE"]
    schema = meta_conn.adbc_get_table_schema("beta", catalog_filter="quiver", db_schema_filter="public")
    assert schema.field("vec").type == pa.list_(pa.float32(), 3)
    assert schema.field("id").nullable is False
    with pytest.raises(adbc_driver_manager.Error):
        meta_conn.adbc_get_table_schema("no_such_table")
