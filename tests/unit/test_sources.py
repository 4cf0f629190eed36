"""Batch sources, read from real files: folders, globs, JSONL, CSV, Parquet and groups of rows."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import InputError, Item, ItemKind, UsageError
from conveyor.sources.readers import (
    SourceItem,
    SourceSpec,
    items_from_iterable,
    read_source,
    rebuild_item,
)


def read(source: Path | str, **options: Any) -> list[SourceItem]:
    return list(read_source(SourceSpec(str(source), **options)))


def item_of(source_item: SourceItem) -> Item:
    return rebuild_item(source_item.kind, source_item.id, source_item.payload)


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- folders and globs ------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in {
        "a.txt": "alpha",
        "b.md": "bravo",
        "sub/c.txt": "charlie",
        "sub/deeper/d.txt": "delta",
        ".hidden": "skip me",
        ".git/config": "skip me too",
        "sub/.cache/e.txt": "and me",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_folder_gives_every_file_recursively_with_relative_posix_ids(tree: Path) -> None:
    items = read(tree)
    assert [i.id for i in items] == ["a.txt", "b.md", "sub/c.txt", "sub/deeper/d.txt"]
    assert all(i.kind is ItemKind.FILE and i.error is None for i in items)
    assert [item_of(i).read_text() for i in items] == ["alpha", "bravo", "charlie", "delta"]
    assert item_of(items[2]).path == (tree / "sub" / "c.txt").resolve()


def test_a_folder_given_with_a_relative_path_gives_the_same_ids(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree.parent)
    assert [i.id for i in read("docs")] == [i.id for i in read(tree)]
    assert item_of(read("docs")[0]).path.is_absolute()


def test_file_keys_follow_the_content_and_nothing_else(tree: Path) -> None:
    before = {i.id: i.key for i in read(tree)}
    assert read(tree) == read(tree)
    (tree / "sub" / "c.txt").write_text("charlie!", encoding="utf-8")
    os.utime(tree / "a.txt", (0, 0))  # a new modification time alone is not a change
    after = {i.id: i.key for i in read(tree)}

    assert after["sub/c.txt"] != before["sub/c.txt"]
    assert {k: v for k, v in after.items() if k != "sub/c.txt"} == {
        k: v for k, v in before.items() if k != "sub/c.txt"
    }


def test_an_unreadable_file_becomes_a_bad_item_and_the_rest_come_through(tree: Path) -> None:
    (tree / "broken.txt").symlink_to(tree / "nowhere.txt")
    items = {i.id: i for i in read(tree)}
    assert set(items) == {"a.txt", "b.md", "broken.txt", "sub/c.txt", "sub/deeper/d.txt"}
    assert items["broken.txt"].error == (
        f"cannot read {tree / 'broken.txt'}: No such file or directory"
    )
    assert items["a.txt"].error is None


def test_an_empty_folder_gives_no_items(tmp_path: Path) -> None:
    assert read(tmp_path) == []


def test_a_glob_gives_matching_files_with_ids_relative_to_its_fixed_part(tree: Path) -> None:
    assert [i.id for i in read(tree / "*.txt")] == ["a.txt"]
    recursive = read(f"{tree}/**/*.txt")
    assert [i.id for i in recursive] == ["a.txt", "sub/c.txt", "sub/deeper/d.txt"]
    assert [item_of(i).read_text() for i in recursive] == ["alpha", "charlie", "delta"]


def test_a_glob_skips_the_folders_it_matches(tree: Path) -> None:
    assert [i.id for i in read(tree / "*")] == ["a.txt", "b.md"]


@pytest.mark.parametrize("pattern", ["*.pdf", "s*", "**/*.pdf"], ids=["nothing", "folders", "deep"])
def test_a_glob_that_matches_no_files_raises_input_error(tree: Path, pattern: str) -> None:
    glob = f"{tree}/{pattern}"
    items = read_source(SourceSpec(glob))
    with pytest.raises(InputError) as excinfo:
        next(items)
    assert str(excinfo.value) == f"the glob {glob!r} matches no files"


# -- JSONL -------------------------------------------------------------------------------------


def test_jsonl_records_take_their_id_from_the_id_field(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl",
        ['{"id": "a", "text": "x"}', '{"id": 7, "text": "y", "tags": ["t"]}'],
    )
    items = read(path, id_field="id")
    assert [(i.id, i.kind, i.error) for i in items] == [
        ("a", ItemKind.RECORD, None),
        ("7", ItemKind.RECORD, None),
    ]
    assert item_of(items[1]).fields == {"id": 7, "text": "y", "tags": ["t"]}


def test_jsonl_ids_default_to_a_stable_content_hash(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "one.jsonl", ['{"a": 1, "b": 2}', '{"a": 2}'])
    second = write_jsonl(tmp_path / "two.ndjson", ['{"a": 3}', '{"b": 2, "a": 1}'])

    ids = [i.id for i in read(first)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == 2
    assert [i.id for i in read(first)] == ids
    # the same record, keys in another order, in another file: the same id and key
    assert read(second)[1].id == ids[0]
    assert read(second)[1].key == read(first)[0].key


def test_bad_jsonl_lines_become_bad_items_and_the_others_come_through(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            '{"id": "a", "text": "x"}',
            "",
            '{"id": "b", oops',
            "[1, 2]",
            '"just a string"',
            "   ",
            '{"id": "c", "text": "z"}',
        ],
    )
    items = read(path, id_field="id")

    assert [i.id for i in items] == ["a", "line-3", "line-4", "line-5", "c"]
    errors = {i.id: i.error for i in items}
    assert errors["a"] is None
    assert errors["c"] is None
    assert re.fullmatch(
        r"data\.jsonl line 3 is not valid JSON: .+ \(column \d+\)", errors["line-3"] or ""
    )
    assert errors["line-4"] == "data.jsonl line 4 is a JSON list, not an object"
    assert errors["line-5"] == "data.jsonl line 5 is a JSON str, not an object"
    assert item_of(items[-1])["text"] == "z"


def test_a_jsonl_record_without_its_id_becomes_a_bad_item(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl",
        ['{"id": "a"}', '{"text": "no id"}', '{"id": null}', '{"id": ""}', '{"id": 0}'],
    )
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [
        ("a", None),
        ("line-2", "line-2 has no value in --id-field 'id'"),
        ("line-3", "line-3 has no value in --id-field 'id'"),
        ("line-4", "line-4 has no value in --id-field 'id'"),
        ("0", None),
    ]


def test_an_invalid_utf8_jsonl_line_becomes_a_bad_item_and_the_others_come_through(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id":\xff"c"}\n{"id": "d"}\n{"id": "\xe9"}\n')
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [
        ("a", None),
        ("b", None),
        (
            "line-3",
            "rows.jsonl line 3 is not valid UTF-8 (byte 7: invalid start byte); re-encode it",
        ),
        ("d", None),
        (
            "line-5",
            "rows.jsonl line 5 is not valid UTF-8 (byte 9: invalid continuation byte); "
            "re-encode it",
        ),
    ]
    assert items[2].kind is ItemKind.RECORD
    assert item_of(items[3]).fields == {"id": "d"}


@pytest.mark.parametrize(
    ("name", "content"),
    [("data.csv", "id,text\n1,a\n2,b\n"), ("data.jsonl", '{"id": 1}\n{"id": 2}\n')],
    ids=["csv", "jsonl"],
)
def test_a_utf8_byte_order_mark_is_not_part_of_the_data(
    tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_bytes("\ufeff".encode() + content.encode())
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [("1", None), ("2", None)]


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_rows_become_records_keyed_by_the_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('id,text,n\na,"hello, world",1\n\nb,"two\nlines",2\n', encoding="utf-8")
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [("a", None), ("b", None)]
    assert item_of(items[0]).fields == {"id": "a", "text": "hello, world", "n": "1"}
    assert item_of(items[1])["text"] == "two\nlines"
    assert all(re.fullmatch(r"[0-9a-f]{16}", i.id) for i in read(path))


def test_a_ragged_csv_row_becomes_a_bad_item_and_the_others_come_through(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text,n\na,x,1\nb,y\nc,z,3,extra\nd,w,4\n", encoding="utf-8")
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [
        ("a", None),
        ("line-3", "data.csv line 3 has 2 fields, the header has 3"),
        ("line-4", "data.csv line 4 has 4 fields, the header has 3"),
        ("d", None),
    ]


def test_an_id_field_that_is_not_a_csv_column_fails_before_any_item(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("key,text\na,x\n", encoding="utf-8")
    items = read_source(SourceSpec(str(path), id_field="id"))
    with pytest.raises(InputError) as excinfo:
        next(items)
    assert str(excinfo.value) == "--id-field 'id' is not a column of data.csv; columns: key, text"


def test_an_invalid_utf8_csv_row_becomes_a_bad_item_and_the_next_rows_are_fine(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b'id,text\n1,a\n2,caf\xe9\n3,c\n4,"two\xff\nlines"\n5,"two\nlin\xffes"\n6,f\n')
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [
        ("1", None),
        (
            "line-3",
            "data.csv line 3 is not valid UTF-8 (byte 6: invalid continuation byte); re-encode it",
        ),
        ("3", None),
        # a quoted field over two lines is one row, named by its last line like a ragged row;
        # the message names the line with the bad byte
        ("line-6", "data.csv line 5 is not valid UTF-8 (byte 7: invalid start byte); re-encode it"),
        ("line-8", "data.csv line 8 is not valid UTF-8 (byte 4: invalid start byte); re-encode it"),
        ("6", None),
    ]
    assert item_of(items[2]).fields == {"id": "3", "text": "c"}
    assert item_of(items[-1]).fields == {"id": "6", "text": "f"}


def test_an_invalid_utf8_csv_header_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,t\xe9xt\n1,a\n")
    items = read_source(SourceSpec(str(path)))
    with pytest.raises(InputError) as excinfo:
        next(items)
    assert str(excinfo.value) == (
        f"{path}: the header line is not valid UTF-8 (byte 5: invalid continuation byte); "
        "re-encode it"
    )


def test_a_csv_with_cr_line_endings_is_read_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,text\r1,a\r2,b\r")
    items = read(path, id_field="id")
    assert [(i.id, i.error) for i in items] == [("1", None), ("2", None)]


@pytest.mark.parametrize("content", ["", "id,text\n"])
def test_an_empty_csv_gives_no_items(tmp_path: Path, content: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content, encoding="utf-8")
    assert read(path) == []


# -- Parquet -----------------------------------------------------------------------------------


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "text": ["x", "y", "z"],
            "n": pa.array([1, 2, 3], type=pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def test_parquet_rows_become_typed_records(parquet: Path) -> None:
    items = read(parquet, id_field="id")
    assert [i.id for i in items] == ["a", "b", "c"]
    assert item_of(items[1]).fields == {"id": "b", "text": "y", "n": 2}
    assert [i.id for i in read(parquet)] == [i.id for i in read(parquet)]


def test_an_id_field_that_is_not_a_parquet_column_raises_input_error(parquet: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        read(parquet, id_field="key")
    assert str(excinfo.value) == (
        "--id-field 'key' is not a column of data.parquet; columns: id, text, n"
    )


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_a_truncated_parquet_file_fails_before_any_item(parquet: Path, keep: float) -> None:
    data = parquet.read_bytes()
    parquet.write_bytes(data[: int(len(data) * keep)])
    items = read_source(SourceSpec(str(parquet)))
    with pytest.raises(InputError, match=re.escape(f"{parquet} is not a readable Parquet file")):
        next(items)


def test_a_file_that_is_not_parquet_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text("id,text\na,x\n", encoding="utf-8")
    with pytest.raises(InputError, match="is not a readable Parquet file"):
        read(path)


# -- groups ------------------------------------------------------------------------------------


@pytest.fixture
def sales(tmp_path: Path) -> Path:
    path = tmp_path / "sales.csv"
    path.write_text("a,b,v\n1,x,10\n2,x,20\n1,y,30\n1,x,40\n2,x,50\n", encoding="utf-8")
    return path


def test_group_by_gives_one_item_per_group_with_its_rows(sales: Path) -> None:
    items = read(sales, group_by=("a", "b"))

    assert [i.id for i in items] == ["a=1/b=x", "a=1/b=y", "a=2/b=x"]
    assert all(i.kind is ItemKind.GROUP and i.error is None for i in items)
    first = item_of(items[0])
    assert first.fields == {"a": 1, "b": "x"}
    assert type(first.fields["a"]) is int  # plain Python values, not numpy scalars
    assert first.frame["v"].tolist() == [10, 40]
    assert first.frame.index.tolist() == [0, 1]
    assert item_of(items[1]).frame["v"].tolist() == [30]
    assert item_of(items[2]).frame["v"].tolist() == [20, 50]


def test_rows_with_an_empty_group_key_form_a_group_of_their_own(sales: Path) -> None:
    with sales.open("a", encoding="utf-8") as fh:
        fh.write(",x,60\n")
    items = read(sales, group_by=("a", "b"))
    assert len(items) == 4
    assert items[-1].id == "a=<missing>/b=x"
    assert item_of(items[-1]).fields["b"] == "x"
    assert item_of(items[-1]).frame["v"].tolist() == [60]
    assert sum(len(item_of(i).frame) for i in items) == 6


def test_an_empty_key_in_one_row_does_not_rename_the_other_groups(sales: Path) -> None:
    before = [i.id for i in read(sales, group_by=("a", "b"))]
    with sales.open("a", encoding="utf-8") as fh:
        fh.write(",x,60\n")
    after = [i.id for i in read(sales, group_by=("a", "b"))]
    assert before == ["a=1/b=x", "a=1/b=y", "a=2/b=x"]
    assert after == [*before, "a=<missing>/b=x"]


def test_integral_float_keys_are_written_as_whole_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,v\n1.0,10\n2.5,20\n1,30\n-3.0,40\n", encoding="utf-8")
    items = read(path, group_by=("a",))
    assert [i.id for i in items] == ["a=-3", "a=1", "a=2.5"]
    assert item_of(items[1]).frame["v"].tolist() == [10, 30]


def test_an_empty_string_key_and_a_missing_key_are_two_groups_with_two_ids(
    tmp_path: Path,
) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        ['{"a": "", "v": 1}', '{"a": null, "v": 2}', '{"a": "x", "v": 3}'],
    )
    items = read(path, group_by=("a",))
    assert len(items) == 3
    assert len({i.id for i in items}) == 3


def test_group_by_reads_parquet_and_jsonl_too(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user": ["u", "v", "u"], "amount": [1, 2, 3]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.parquet", "t.jsonl"):
        items = read(tmp_path / name, group_by=("user",))
        assert [i.id for i in items] == ["user=u", "user=v"]
        assert item_of(items[0]).frame["amount"].tolist() == [1, 3]


def test_a_group_key_changes_only_when_its_rows_change(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,v\n1,10\n2,20\n", encoding="utf-8")
    before = {i.id: i.key for i in read(path, group_by=("a",))}
    path.write_text("a,v\n1,10\n2,21\n", encoding="utf-8")
    after = {i.id: i.key for i in read(path, group_by=("a",))}
    assert after["a=1"] == before["a=1"]
    assert after["a=2"] != before["a=2"]


def test_a_missing_group_by_column_raises_input_error_listing_the_columns(sales: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        read(sales, group_by=("a", "c", "d"))
    assert str(excinfo.value) == "--group-by column(s) c, d not in sales.csv; columns: a, b, v"


def test_an_unreadable_table_for_group_by_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=re.escape(f"cannot read {path} as a table:")):
        read(path, group_by=("a",))


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.csv"
    rows = [f"u{n},{day},{n * 10 + day}" for n in range(50) for day in range(3)]
    path.write_text("user,day,amount\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_buckets_pack_whole_groups_into_at_most_n_items(users: Path) -> None:
    items = read(users, group_by=("user",), buckets=4)

    assert 1 < len(items) <= 4
    assert all(re.fullmatch(r"bucket-[0-3]", i.id) for i in items)
    rebuilt = [item_of(i) for i in items]
    assert sum(i["groups"] for i in rebuilt) == 50
    assert [i["bucket"] for i in rebuilt] == [int(i.id.split("-")[1]) for i in items]
    # every row is in exactly one bucket, and every user's rows are in one bucket
    everything = pd.concat([i.frame for i in rebuilt]).sort_values(["user", "day"])
    expected = pd.read_csv(users).sort_values(["user", "day"])
    pd.testing.assert_frame_equal(
        everything.reset_index(drop=True), expected.reset_index(drop=True)
    )
    owners = {user: i.id for i in rebuilt for user in set(i.frame["user"])}
    assert len(owners) == 50
    for item in rebuilt:
        assert item.frame["user"].nunique() == item["groups"]


def test_bucket_assignment_is_stable_across_reads_and_new_groups(users: Path) -> None:
    def owners() -> dict[str, str]:
        items = read(users, group_by=("user",), buckets=4)
        return {u: i.id for i in items for u in set(item_of(i).frame["user"])}

    first = owners()
    assert owners() == first
    assert read(users, group_by=("user",), buckets=4) == read(users, group_by=("user",), buckets=4)
    with users.open("a", encoding="utf-8") as fh:
        fh.write("newcomer,0,1\n")
    after = owners()
    assert {u: b for u, b in after.items() if u != "newcomer"} == first


def test_bucket_ids_are_zero_padded_and_no_more_than_the_groups(users: Path) -> None:
    many = read(users, group_by=("user",), buckets=12)
    assert all(re.fullmatch(r"bucket-\d\d", i.id) for i in many)
    assert [i.id for i in many] == sorted(i.id for i in many)
    few = read(users, group_by=("user",), buckets=1000)
    assert len(few) <= 50


# -- unusable specs ----------------------------------------------------------------------------


def test_a_missing_input_raises_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError) as excinfo:
        read(missing)
    assert str(excinfo.value) == (
        f"input {str(missing)!r} does not exist; pass a folder, a glob or a file"
    )


@pytest.mark.parametrize(("name", "described"), [("notes.txt", ".txt"), ("README", "suffix-less")])
def test_a_single_plain_file_raises_input_error_saying_to_pass_its_folder(
    tmp_path: Path, name: str, described: str
) -> None:
    path = tmp_path / name
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(InputError) as excinfo:
        read(path)
    message = str(excinfo.value)
    assert f"is a {described} file" in message
    assert "must be .jsonl, .ndjson, .csv, .parquet (one item per row)" in message
    assert message.endswith("pass their folder or a glob")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"buckets": 4}, "--buckets packs groups into batches; it needs --group-by COLUMNS"),
        ({"buckets": 0, "group_by": ("a",)}, "--buckets 0: must be a whole number >= 1"),
        ({"buckets": -2, "group_by": ("a",)}, "--buckets -2: must be a whole number >= 1"),
    ],
)
def test_bad_bucket_options_raise_usage_error(
    sales: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as excinfo:
        read(sales, **options)
    assert str(excinfo.value) == message


def test_table_options_on_a_folder_raise_usage_error(tree: Path) -> None:
    with pytest.raises(UsageError, match="--group-by splits a table; --input must be a"):
        read(tree, group_by=("a",))
    with pytest.raises(UsageError, match="--id-field names a column of a table"):
        read(tree, id_field="id")


def test_describe_names_the_input_and_its_options() -> None:
    spec = SourceSpec("sales.csv", id_field="id", group_by=("a", "b"), buckets=4)
    assert spec.describe() == "sales.csv --id-field id --group-by a,b --buckets 4"
    assert SourceSpec("docs/").describe() == "docs/"


# -- Python values -------------------------------------------------------------------------------


def test_iterables_give_records_for_dicts_and_values(tmp_path: Path) -> None:
    items = list(items_from_iterable([{"id": "a", "n": 1}, 42, "text"]))
    assert [i.kind for i in items] == [ItemKind.RECORD] * 3
    assert [item_of(i).fields for i in items] == [
        {"id": "a", "n": 1},
        {"value": 42},
        {"value": "text"},
    ]
    again = list(items_from_iterable([{"n": 1, "id": "a"}, 42, "text"]))
    assert [i.id for i in again] == [i.id for i in items]


def test_iterables_use_the_id_field_and_flag_values_without_it() -> None:
    items = list(items_from_iterable([{"id": "a"}, {"name": "b"}, {"id": 3}], id_field="id"))
    assert [(i.id, i.error) for i in items] == [
        ("a", None),
        ("#1", "#1 has no value in --id-field 'id'"),
        ("3", None),
    ]


def test_iterables_pass_record_and_group_items_through() -> None:
    given = [
        Item("r", ItemKind.RECORD, fields={"x": 1}),
        Item("g", ItemKind.GROUP, fields={"k": 1}, frame=pd.DataFrame({"k": [1, 1]})),
    ]
    items = list(items_from_iterable(given))
    assert [(i.id, i.kind, i.error) for i in items] == [(g.id, g.kind, None) for g in given]
    rebuilt = [item_of(i) for i in items]
    assert rebuilt == given
    assert rebuilt[0]["x"] == 1
    assert rebuilt[1].frame["k"].tolist() == [1, 1]


def test_iterables_pass_file_items_through(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("file", encoding="utf-8")
    [item] = list(items_from_iterable([Item("mine", ItemKind.FILE, path=path)]))
    assert (item.id, item.kind, item.error) == ("mine", ItemKind.FILE, None)
    rebuilt = item_of(item)
    assert (rebuilt.id, rebuilt.path, rebuilt.read_text()) == ("mine", path.resolve(), "file")
    # the same file read from its folder: the same content key
    [from_folder] = read(tmp_path)
    assert item.key == from_folder.key


def test_rebuild_item_accepts_the_kind_as_text(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x", encoding="utf-8")
    [file_item] = read(tmp_path)
    rebuilt = rebuild_item("file", file_item.id, file_item.payload)
    assert (rebuilt.id, rebuilt.kind, rebuilt.read_text()) == ("f.txt", ItemKind.FILE, "x")
    [record] = list(items_from_iterable([{"a": 1}]))
    assert rebuild_item("record", record.id, record.payload).fields == {"a": 1}


def test_jsonl_records_equal_their_json(tmp_path: Path) -> None:
    records = [
        {"id": str(n), "values": [n, n * 2], "nested": {"ok": n % 2 == 0}} for n in range(20)
    ]
    path = write_jsonl(tmp_path / "data.jsonl", [json.dumps(r) for r in records])
    assert [item_of(i).fields for i in read(path, id_field="id")] == records
