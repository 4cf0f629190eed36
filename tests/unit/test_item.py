"""The Item: files, records and groups, and how they travel to workers."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pandas as pd
import pytest

from conveyor import InputError, Item, ItemKind


@pytest.fixture
def licence(tmp_path: Path) -> Item:
    path = tmp_path / "licenses" / "mit.txt"
    path.parent.mkdir()
    path.write_bytes("MIT License\nCopyright © 2024\n".encode())
    return Item("licenses/mit.txt", ItemKind.FILE, path=path)


@pytest.fixture
def record() -> Item:
    return Item("r1", ItemKind.RECORD, fields={"text": "hello", "lang": "en", "score": 0.5})


@pytest.fixture
def group() -> Item:
    frame = pd.DataFrame({"user": ["a", "a"], "amount": [3, 4]})
    return Item("user=a", ItemKind.GROUP, fields={"user": "a"}, frame=frame)


# -- files ---------------------------------------------------------------------------------------


def test_a_file_item_reads_its_file(licence: Item) -> None:
    assert licence.path.name == "mit.txt"
    assert licence.read_text() == "MIT License\nCopyright © 2024\n"
    assert licence.read_bytes() == "MIT License\nCopyright © 2024\n".encode()
    assert licence.read_text(encoding="latin-1").endswith("Â© 2024\n")
    assert licence.fields == {}
    assert len(licence) == 0


def test_path_may_be_given_as_a_string(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    item = Item("a.txt", "file", path=str(tmp_path / "a.txt"))  # type: ignore[arg-type]
    assert item.kind is ItemKind.FILE
    assert item.path == tmp_path / "a.txt"
    assert item.read_text() == "a"


def test_invalid_utf8_raises_input_error_naming_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait")
    item = Item("latin.txt", ItemKind.FILE, path=path)

    with pytest.raises(InputError) as excinfo:
        item.read_text()
    message = str(excinfo.value)
    assert message.startswith(f"{path} is not valid utf-8 (byte 3: ")
    assert "errors='replace'" in message
    assert isinstance(excinfo.value.__cause__, UnicodeDecodeError)
    assert item.read_text(errors="replace") == "caf\ufffd au lait"
    assert item.read_text(encoding="latin-1") == "café au lait"


def test_an_unknown_encoding_raises_input_error(licence: Item) -> None:
    with pytest.raises(InputError, match=r"unknown encoding 'klingon' for .*mit\.txt$"):
        licence.read_text(encoding="klingon")


def test_a_missing_file_raises_input_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    item = Item("gone.txt", ItemKind.FILE, path=path)

    with pytest.raises(InputError) as excinfo:
        item.read_text()
    assert str(excinfo.value) == f"cannot read {path}: No such file or directory"
    with pytest.raises(InputError, match=r"cannot read .*gone\.txt: "):
        item.read_bytes()


def test_a_folder_is_not_readable_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(f"cannot read {tmp_path}: Is a directory")):
        Item("x", ItemKind.FILE, path=tmp_path).read_bytes()


def test_records_and_groups_have_no_path(record: Item, group: Item) -> None:
    with pytest.raises(InputError, match="item 'r1' is a record item, not a file: it has no path"):
        _ = record.path
    with pytest.raises(InputError, match="item 'r1' is a record item, not a file"):
        record.read_text()
    with pytest.raises(InputError, match="item 'user=a' is a group item, not a file"):
        group.read_bytes()


# -- records --------------------------------------------------------------------------------------


def test_a_record_is_a_read_only_mapping_of_its_fields(record: Item) -> None:
    assert record["text"] == "hello"
    assert record.fields == {"text": "hello", "lang": "en", "score": 0.5}
    assert list(record) == ["text", "lang", "score"]
    assert len(record) == 3
    assert "lang" in record
    assert "missing" not in record
    assert record.get("missing") is None
    assert dict(record) == record.fields


def test_a_missing_field_raises_key_error_listing_the_fields(record: Item) -> None:
    with pytest.raises(KeyError) as excinfo:
        record["txet"]
    assert excinfo.value.args == ("item 'r1' has no field 'txet' (fields: lang, score, text)",)


def test_a_missing_field_of_an_empty_record_says_none() -> None:
    with pytest.raises(KeyError) as excinfo:
        Item("r", ItemKind.RECORD)["x"]
    assert excinfo.value.args == ("item 'r' has no field 'x' (fields: none)",)


def test_the_fields_are_copied_not_shared() -> None:
    fields = {"a": 1}
    item = Item("r", ItemKind.RECORD, fields=fields)
    fields["a"] = 2
    assert item["a"] == 1


def test_a_record_has_no_frame(record: Item) -> None:
    with pytest.raises(
        InputError, match="item 'r1' is a record item, not a group: it has no frame"
    ):
        _ = record.frame


# -- groups ---------------------------------------------------------------------------------------


def test_a_group_offers_its_frame_and_its_key_fields(group: Item) -> None:
    assert group.frame["amount"].sum() == 7
    assert list(group.frame.columns) == ["user", "amount"]
    assert group["user"] == "a"
    assert group.fields == {"user": "a"}


# -- identity and pickling -------------------------------------------------------------------------


def test_items_are_equal_by_id_and_kind() -> None:
    a = Item("x", ItemKind.RECORD, fields={"v": 1})
    b = Item("x", ItemKind.RECORD, fields={"v": 2})
    c = Item("x", ItemKind.GROUP, fields={"v": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert a != {"v": 1}
    assert len({a, b, c}) == 2
    assert repr(a) == "Item('x', record)"


def test_file_items_survive_pickling(licence: Item) -> None:
    copy = pickle.loads(pickle.dumps(licence))
    assert (copy.id, copy.kind, copy.path) == (licence.id, ItemKind.FILE, licence.path)
    assert copy.read_text() == licence.read_text()


def test_record_items_survive_pickling(record: Item) -> None:
    copy = pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
    assert (copy.id, copy.kind) == ("r1", ItemKind.RECORD)
    assert copy.fields == record.fields
    with pytest.raises(InputError):
        _ = copy.path


def test_group_items_survive_pickling(group: Item) -> None:
    copy = pickle.loads(pickle.dumps(group))
    assert copy.kind is ItemKind.GROUP
    assert copy.fields == {"user": "a"}
    pd.testing.assert_frame_equal(copy.frame, group.frame)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'folder' is not a valid ItemKind"):
        Item("x", "folder")  # type: ignore[arg-type]
