from pathlib import Path

import pytest

from kernel.config import DEFAULT_COLLECTIONS, ConfigError, load_settings


def test_defaults_are_the_embedded_mode():
    s = load_settings({})
    assert s.database_url is None
    assert s.log_backend == "postgres"
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)
    assert s.collections == DEFAULT_COLLECTIONS
    assert s.blob_path == Path(".data/blobs")
    assert s.firehose_url.startswith("wss://")


def test_values_are_parsed():
    s = load_settings(
        {
            "DATABASE_URL": "postgresql://u@db:5432/x",
            "KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "PLYR_PARTITIONS": "16",
            "PLYR_FIREHOSE_URL": "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos",
            "PLYR_COLLECTIONS": "fm.plyr.track, fm.plyr.*",
            "PLYR_API_BIND": "0.0.0.0:9000",
            "PLYR_CORS_ORIGINS": "https://plyr.fm,http://localhost:5173",
        }
    )
    assert s.log_backend == "kafka"
    assert s.partitions == 16
    assert s.collections == ("fm.plyr.track", "fm.plyr.*")
    assert (s.api_host, s.api_port) == ("0.0.0.0", 9000)
    assert s.cors_origins == ("https://plyr.fm", "http://localhost:5173")
    assert s.topic("repo") == "plyr.repo"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"PLYR_LOG_BACKEND": "redis"}, "PLYR_LOG_BACKEND"),
        ({"PLYR_LOG_BACKEND": "kafka"}, "KAFKA_BOOTSTRAP"),
        ({"KAFKA_BOOTSTRAP": "nohostport"}, "KAFKA_BOOTSTRAP"),
        ({"PLYR_PARTITIONS": "zero"}, "PLYR_PARTITIONS"),
        ({"PLYR_PARTITIONS": "0"}, "between 1 and 1024"),
        ({"PLYR_FIREHOSE_URL": "http://relay"}, "PLYR_FIREHOSE_URL"),
        ({"PLYR_COLLECTIONS": "track"}, "not an NSID"),
        ({"PLYR_API_BIND": "127.0.0.1:99999"}, "PLYR_API_BIND"),
        ({"PLYR_CORS_ORIGINS": "*"}, "PLYR_CORS_ORIGINS"),
        ({"PLYR_BLOB_CACHE_MAX_BYTES": "10G"}, "PLYR_BLOB_CACHE_MAX_BYTES"),
        ({"PLYR_BLOB_CACHE_MAX_BYTES": "0"}, "PLYR_BLOB_CACHE_MAX_BYTES"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_known_did_collections_default_and_override():
    assert load_settings({}).known_did_collections == ("app.bsky.actor.profile",)
    assert load_settings({"PLYR_KNOWN_DID_COLLECTIONS": "none"}).known_did_collections == ()
    with pytest.raises(ConfigError, match="PLYR_KNOWN_DID_COLLECTIONS"):
        load_settings({"PLYR_KNOWN_DID_COLLECTIONS": "profile"})


def test_api_worker_pool_and_cache_settings():
    s = load_settings({})
    assert s.api_workers >= 1 and s.api_pool_size == 10
    assert (s.api_cache_entries, s.api_cache_mb, s.api_cache_ttl_s) == (16384, 64, 10)
    s = load_settings(
        {
            "PLYR_API_WORKERS": "3",
            "PLYR_API_POOL_SIZE": "4",
            "PLYR_API_CACHE_ENTRIES": "0",
            "PLYR_API_CACHE_TTL": "30",
            "PLYR_API_CACHE_MB": "8",
        }
    )
    assert s.api_cache_mb == 8
    assert (s.api_workers, s.api_pool_size, s.api_cache_entries, s.api_cache_ttl_s) == (3, 4, 0, 30)
    with pytest.raises(ConfigError, match="PLYR_API_WORKERS: must be between 1"):
        load_settings({"PLYR_API_WORKERS": "0"})
    with pytest.raises(ConfigError, match="PLYR_API_CACHE_ENTRIES: expected an integer"):
        load_settings({"PLYR_API_CACHE_ENTRIES": "lots"})


def test_play_rate_limit_settings():
    s = load_settings({})
    assert (s.play_rate, s.play_burst) == (1, 60)
    s = load_settings({"PLYR_PLAY_RATE": "5000", "PLYR_PLAY_BURST": "10000"})
    assert (s.play_rate, s.play_burst) == (5000, 10000)
    with pytest.raises(ConfigError, match="PLYR_PLAY_RATE: must be between 1"):
        load_settings({"PLYR_PLAY_RATE": "0"})
    with pytest.raises(ConfigError, match="PLYR_PLAY_BURST: expected an integer"):
        load_settings({"PLYR_PLAY_BURST": "many"})


def test_blob_cache_cap_defaults_to_half_the_disk():
    assert load_settings({}).blob_cache_max_bytes is None
    got = load_settings({"PLYR_BLOB_CACHE_MAX_BYTES": "10737418240"})
    assert got.blob_cache_max_bytes == 10 * 1024**3
