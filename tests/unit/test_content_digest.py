"""CsvFileProvider.content_digest: what decides that a rerun of a file is unchanged (the
file's bytes, the mapping, the loader's code), read without parsing the file."""

from __future__ import annotations

from pathlib import Path

from mdq.providers.csv_file import CsvFileProvider, CsvMapping

BODY = (
    "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"
    "AAA,crypto,1h,2024-01-01T00:00:00Z,10,11,9,10.5,100\n"
)


def test_the_digest_follows_the_bytes_and_the_mapping_not_the_name(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text(BODY)
    same = tmp_path / "same.csv"
    same.write_text(BODY)
    provider = CsvFileProvider(one)
    digest = provider.content_digest()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert provider._parsed is None  # hashing reads the bytes, it does not parse
    assert CsvFileProvider(same).content_digest() == digest
    other = tmp_path / "other.csv"
    other.write_text(BODY.replace("10.5", "10.6"))
    assert CsvFileProvider(other).content_digest() != digest
    mapped = CsvFileProvider(one, CsvMapping.from_dict({"timestamps": {"timezone": "UTC"}}))
    assert mapped.content_digest() != digest
