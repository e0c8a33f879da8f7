from sqlalchemy import create_engine, inspect, text

from knowledge import migrate

TABLES = {"documents", "chunks", "corpus_state", "term_stats", "interactions", "feedback", "model_versions",
          "escalations"}


def test_migrations_up_down_up(empty_db_url):
    engine = create_engine(empty_db_url)
    migrate.upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    assert migrate.current_revision(engine) is not None
    with engine.connect() as conn:
        indexes = {r.indexname: r.indexdef for r in conn.execute(text("SELECT indexname, indexdef FROM pg_indexes"))}
    assert "hnsw" in indexes["chunks_embedding_hnsw"] and "vector_cosine_ops" in indexes["chunks_embedding_hnsw"]
    assert "gin" in indexes["chunks_tsv"]

    migrate.downgrade(engine)
    assert not TABLES & set(inspect(engine).get_table_names())
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)  # and back up again, cleanly
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_upgrade_is_idempotent(db_url):
    engine = create_engine(db_url)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == before
    engine.dispose()


def test_embedding_dimension_from_config(empty_db_url):
    engine = create_engine(empty_db_url)
    migrate.upgrade(engine, embedding_dim=1536)
    with engine.connect() as conn:
        dim = conn.execute(
            text("SELECT atttypmod FROM pg_attribute WHERE attrelid='chunks'::regclass AND attname='embedding'")
        ).scalar_one()
    assert dim == 1536
    engine.dispose()
