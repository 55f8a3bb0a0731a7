"""Collections: incremental writes, chunked documents, compatibility checks, concurrent writers, and
crash safety (a writer process killed with SIGKILL at several points of an add)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from winnow.collection import Collection, drop_collection, list_collections
from winnow.collection_files import stale_files
from winnow.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    IncompatibleCollectionError,
    InvalidArgumentError,
)
from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model
from winnow.types import Document

from _collection_helpers import METHODS, all_ids, assert_same_ranking, by_id, copy_collection
from _seed import SEED_DOCS, SEED_QUERY, SEED_TOP5

SMALL = [
    Document("cats", "Cats are small domesticated carnivores that purr and hunt mice.", "Cats"),
    Document("volcano", "A volcano erupts when molten rock called magma rises to the surface."),
    Document("violin", "The violin is a string instrument played with a bow.", "Violin", {"kind": "music"}),
    Document("tides", "Ocean tides are caused by the gravitational pull of the moon."),
    Document("coffee", "Coffee beans are roasted seeds of the coffea plant, brewed into a drink."),
    Document("chess", "Chess is a board game in which each player commands sixteen pieces."),
]


@pytest.fixture()
def small(tmp_path):
    col = Collection.create("small", home=tmp_path / "home")
    col.add(SMALL)
    yield col
    col.close()


# -- the seed check, through a collection ---------------------------------------------------------------
def test_seed_check_through_a_collection(tmp_path):
    with Collection.create("seed", home=tmp_path) as col:
        col.add([Document(str(i), text) for i, text in enumerate(SEED_DOCS, start=1)])
        ranking = col.search(SEED_QUERY, method="dense", top_k=5)
    assert [(int(h.doc_id), round(h.score, 4)) for h in ranking.hits] == SEED_TOP5
    assert ranking.hits[0].text == SEED_DOCS[0]


# -- incremental writes ----------------------------------------------------------------------------------------
def test_add_reports_and_stores_documents(small):
    assert len(small) == 6 and small.generation == 1
    info = small.info()
    assert (info.documents, info.chunks, info.generation, info.model) == (6, 6, 1, DEFAULT_BI_ENCODER)
    assert small.get(["violin", "nope"]) == {"violin": SMALL[2]}
    assert small.get(["violin"])["violin"].metadata == {"kind": "music"}
    for method in METHODS:
        assert small.search("magma eruption", method=method, top_k=1).doc_ids == ["volcano"]


def test_identical_re_add_is_skipped(small):
    report = small.add(SMALL)
    assert (report.added, report.updated, report.unchanged, report.chunks_encoded) == (0, 0, 6, 0)
    assert report.generation == small.generation == 1
    assert small.add(SMALL, upsert=False).unchanged == 6


def test_upsert_replaces_the_old_text_everywhere(small):
    new = Document("violin", "Glaciers are slow rivers of ice that carve valleys into mountains.", "Glaciers")
    report = small.add([new, SMALL[0]])
    assert (report.added, report.updated, report.unchanged, report.chunks_encoded) == (0, 1, 1, 1)
    assert report.generation == 2 and len(small) == 6
    assert small.get(["violin"])["violin"] == new
    for method in METHODS:
        top = small.search("glacier ice carving valleys", method=method, top_k=1)
        assert top.doc_ids == ["violin"] and top.hits[0].text == new.text and top.hits[0].title == "Glaciers"
    assert "violin" not in small.search("string instrument bow", method="bm25", top_k=6).doc_ids
    assert len(small.store.live_chunks(small.generation)) == 6  # the old chunk is gone, not shadowed


def test_metadata_change_is_an_update(small):
    report = small.add([Document("chess", SMALL[5].text, metadata={"pieces": 32})])
    assert report.updated == 1
    assert small.get(["chess"])["chess"].metadata == {"pieces": 32}


def test_upsert_false_refuses_changed_documents_and_changes_nothing(small):
    with pytest.raises(CollectionExistsError, match=r"\['tides'\].*upsert=True"):
        small.add([Document("tides", "Something else entirely."), Document("fresh", "A new one.")], upsert=False)
    assert small.generation == 1 and len(small) == 6 and small.get(["fresh"]) == {}


def test_delete_removes_from_every_method_and_reports_missing_ids(small):
    report = small.delete(["cats", "no-such-doc", "cats"])
    assert (report.deleted, report.missing, report.generation) == (1, ("no-such-doc",), 2)
    assert len(small) == 5 and small.get(["cats"]) == {}
    for method in METHODS:
        assert "cats" not in all_ids(small, "cats purr and hunt mice", method)
    again = small.delete(["cats"])
    assert (again.deleted, again.missing, again.generation) == (0, ("cats",), 2)


def test_delete_only_does_not_load_the_model(small):
    built = []

    def encoder_for(model):  # counts every bi-encoder the collection asks for
        built.append(model)
        from winnow.encode.bi_encoder import BiEncoder

        return BiEncoder(model)

    with Collection.open("small", home=small.path.parent, encoder_for=encoder_for) as col:
        col.delete(["coffee"])
        assert built == [] and col.info().documents == 5
        col.search("coffee beans", method="dense", top_k=1)  # the factory is the one a search uses
        assert built == [col.model_name]


def test_deleting_everything_leaves_an_empty_searchable_collection(small):
    small.delete([d.id for d in SMALL])
    assert len(small) == 0 and small.info().chunks == 0
    for method in METHODS:
        assert small.search("anything", method=method).hits == ()
    small.add(SMALL[:2])
    assert sorted(all_ids(small, "cats", "dense")) == ["cats", "volcano"]


def test_reopening_after_writes_gives_the_same_results(small):
    small.add([Document("violin", "Glaciers carve valleys."), Document("bees", "Bees make honey from nectar.")])
    small.delete(["tides"])
    queries = ["honey", "moon and ocean", "board games"]
    before = {(q, m): small.search(q, method=m, top_k=6) for q in queries for m in METHODS}
    home = small.path.parent
    small.close()
    with Collection.open("small", home=home) as col:
        assert (len(col), col.generation) == (6, 3)
        for (q, m), ranking in before.items():
            assert_same_ranking(col.search(q, method=m, top_k=6), ranking, atol=1e-6)
        assert stale_files(col.path, col.manifest) == []  # nothing but what generation 3 names


def test_bad_documents_are_refused_before_anything_is_written(small):
    cases = [
        (["not a document"], "expected a winnow.Document"),
        ([Document("", "text")], "document id is empty"),
        ([Document("x", "  \n ")], "text is empty"),
        ([Document("x", "one"), Document("x", "two")], "duplicate document id 'x'"),
    ]
    for docs, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            small.add(docs)
    assert small.generation == 1 and len(small) == 6


# -- chunked documents -------------------------------------------------------------------------------------
LONG = Document(
    "long",
    "The telescope revealed distant galaxies, nebulae and the faint rings of Saturn on a clear night. "
    "Meanwhile in the kitchen, the chef simmered tomatoes with garlic, basil and olive oil for the sauce. "
    "Later the football match went to penalties after the striker hit the crossbar twice in extra time.",
    "A long day",
)


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    col = Collection.create("chunked", home=tmp_path_factory.mktemp("chunked"), window=16, overlap=4)
    col.add([LONG, *SMALL[:3]])
    yield col
    col.close()


def test_long_documents_are_chunked_and_collapse_to_one_hit(chunked):
    chunks = chunked.chunker.chunk(LONG)
    assert len(chunks) >= 4
    assert chunked.info().chunks == len(chunks) + 3
    for method in METHODS:
        ranking = chunked.search("telescope galaxies kitchen chef football penalties", method=method, top_k=10)
        assert sorted(ranking.doc_ids) == sorted({"long", "cats", "volcano", "violin"} & set(ranking.doc_ids))
        assert ranking.doc_ids.count("long") == 1
    assert len(chunked.search("telescope", method="dense", top_k=10)) == 4


@pytest.mark.parametrize("method", ["bm25", "dense"])
def test_a_hit_is_its_best_chunk(chunked, method):
    chunks = chunked.chunker.chunk(LONG)
    hit = chunked.search("striker hit the crossbar in extra time", method=method, top_k=1).hits[0]
    assert hit.doc_id == "long"
    best = chunks[hit.chunk.index]
    assert hit.text == best.text == LONG.text[best.start : best.end]
    assert "crossbar" in hit.text and "telescope" not in hit.text
    assert hit.title == LONG.title


def test_dense_document_score_is_the_max_over_its_chunks(chunked, bi_encoder):
    query = "cooking a tomato sauce"
    chunks = chunked.chunker.chunk(LONG)
    per_chunk = bi_encoder.encode_documents([c.content for c in chunks]) @ bi_encoder.encode_query(query)
    hit = next(h for h in chunked.search(query, method="dense", top_k=4).hits if h.doc_id == "long")
    assert hit.score == pytest.approx(float(per_chunk.max()), abs=1e-4)
    assert str(hit.chunk) == f"long#{int(per_chunk.argmax())}"


# -- life cycle, names, compatibility ------------------------------------------------------------------------
def test_names_and_life_cycle(tmp_path):
    home = tmp_path / "home"
    for bad in ("", "../up", "a/b", ".hidden", "x" * 65, "spaces here"):
        with pytest.raises(InvalidArgumentError, match="invalid collection name"):
            Collection.create(bad, home=home)
    with pytest.raises(CollectionNotFoundError, match="no collection named 'nope'.*collections there: none"):
        Collection.open("nope", home=home)
    Collection.create("one", home=home).close()
    with pytest.raises(CollectionExistsError, match="'one' already exists"):
        Collection.create("one", home=home)
    with pytest.raises(CollectionNotFoundError, match="collections there: one"):
        Collection.open("two", home=home)
    with Collection.open_or_create("two", home=home, window=32, overlap=8) as two:
        assert two.info().window == 32 and two.generation == 0
    assert [i.name for i in list_collections(home)] == ["one", "two"]
    assert list_collections(tmp_path / "no-home") == []
    drop_collection("one", home=home)
    assert [i.name for i in list_collections(home)] == ["two"]
    assert sorted(p.name for p in home.iterdir()) == ["two"]  # nothing left behind
    with pytest.raises(CollectionNotFoundError):
        drop_collection("one", home=home)


def test_bad_chunking_is_refused_before_anything_is_created(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(InvalidArgumentError, match="overlap"):
        Collection.create("c", home=home, window=16, overlap=16)
    with pytest.raises(InvalidArgumentError, match="window"):
        Collection.create("c", home=home, window=4)
    assert not home.exists() or list(home.iterdir()) == []


def test_opening_with_another_model_is_refused(demo_collection, tiny_cross_encoder_path):
    home = demo_collection.path.parent
    with pytest.raises(IncompatibleCollectionError) as err:
        Collection.open("demo", home=home, model=str(tiny_cross_encoder_path))
    message = str(err.value)
    assert DEFAULT_BI_ENCODER in message and str(tiny_cross_encoder_path) in message
    # the same model under other names is fine: short id, or its folder (same weights)
    for same in ("all-MiniLM-L6-v2", str(resolve_model(DEFAULT_BI_ENCODER).path)):
        Collection.open("demo", home=home, model=same).close()


def test_another_format_version_is_refused(demo_collection, tmp_path):
    path = copy_collection(demo_collection.path, tmp_path / "home" / "demo")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleCollectionError, match="format version 99; this winnow reads versions 1, 2.*Rebuild"):
        Collection.open("demo", home=tmp_path / "home")


def test_a_relative_local_model_path_works_from_any_directory(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "minilm").symlink_to(resolve_model(DEFAULT_BI_ENCODER).path, target_is_directory=True)
    monkeypatch.chdir(models)
    with Collection.create("local", home=tmp_path / "home", model="minilm") as col:
        col.add(SMALL[:2])
        assert Path(col.model_name).is_absolute()
    monkeypatch.chdir(tmp_path)
    with Collection.open("local", home=tmp_path / "home") as col:
        assert col.search("magma", method="dense", top_k=1).doc_ids == ["volcano"]


# -- several writers and readers ---------------------------------------------------------------------------
def test_a_stale_writer_builds_on_the_committed_generation(small):
    home = small.path.parent
    a = Collection.open("small", home=home)
    b = Collection.open("small", home=home)
    a.add([Document("bees", "Bees make honey from nectar.")])
    b.add([Document("owls", "Owls hunt at night with silent flight.")])  # b last read generation 1
    a.close()
    b.close()
    with Collection.open("small", home=home) as col:
        assert col.generation == 3 and len(col) == 8
        for method in METHODS:
            assert col.search("honey", method=method, top_k=1).doc_ids == ["bees"]
            assert col.search("owls silent flight", method=method, top_k=1).doc_ids == ["owls"]


def test_a_long_lived_reader_sees_other_writers_commits(small):
    reader = Collection.open("small", home=small.path.parent)
    assert reader.search("honey", method="bm25").hits == ()
    small.add([Document("bees", "Bees make honey from nectar.")])
    small.delete(["cats"])
    for method in METHODS:
        assert reader.search("honey bees", method=method, top_k=1).doc_ids == ["bees"]
        assert "cats" not in all_ids(reader, "cats", method)
    reader.close()


def _locked(path: Path) -> bool:
    """Whether a writer holds the collection's write lock."""
    import fcntl

    with open(path / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def test_opening_during_a_write_neither_waits_nor_undoes_it(small):
    home = small.path.parent
    batch = [Document(f"b{i}", f"Batch document {i} about rivers, bridges and boats number {i}.") for i in range(40)]
    writer = threading.Thread(target=small.add, args=(batch,))
    writer.start()
    deadline = time.monotonic() + 60
    while not _locked(small.path) and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    with Collection.open("small", home=home) as other:  # while the writer encodes: must not wait for it
        opened_during_write = writer.is_alive()
        if opened_during_write:
            assert (other.generation, len(other)) == (1, 6)  # the committed state
        writer.join()
        assert all_ids(other, "rivers bridges boats", "bm25")[0].startswith("b")  # searching picks up the commit
        assert len(other) == 46
    with Collection.open("small", home=home) as col:
        assert col.generation == 2 and len(col) == 46 and (col.path / "segments" / "seg-2").is_dir()
        assert col.search("rivers bridges boats", method="dense", top_k=1).doc_ids[0].startswith("b")


# -- crash safety -------------------------------------------------------------------------------------------
CRASH_QUERIES = ["How is Python used in machine learning?", "what makes bread rise", "planets orbiting stars"]
KILL_POINTS = [
    "early",  # right after the add starts: chunking / encoding
    "sqlite-commit",  # as soon as SQLite's WAL grows: the new generation's rows are being committed
    "index-files",  # as soon as segments/.seg-2.tmp appears: the new segment's files are being written
    "index-renamed",  # as soon as segments/seg-2 appears: between the segment's rename and the manifest commit
    "random",  # a random delay of 0-3 s (an add takes about 1-3 s here)
    "after-commit",  # after add() returned
]


def crash_batch(demo_documents) -> list[Document]:
    """12 new documents (two long ones, several chunks each) and 3 changed versions of demo documents."""
    topics = [
        "Glaciers carve valleys as they slowly flow downhill.",
        "The violin has four strings and is played with a bow.",
        "Honey bees communicate the location of flowers by dancing.",
        "A lighthouse guides ships away from dangerous rocks at night.",
        "Sourdough bread rises thanks to wild yeast and lactic bacteria.",
        "Jupiter is the largest planet and has dozens of moons.",
        "Python generators produce values lazily with the yield keyword.",
        "Coral reefs are built by tiny animals called polyps.",
        "Chess openings such as the Sicilian defence are studied for years.",
        "Origami is the Japanese art of folding paper into shapes.",
    ]
    docs = [Document(f"new-{i}", text, f"New {i}") for i, text in enumerate(topics)]
    texts = [d.text for d in demo_documents]
    docs.append(Document("new-long-1", " ".join(texts[:8]), "Digest one"))
    docs.append(Document("new-long-2", " ".join(texts[8:16]), "Digest two", {"part": 2}))
    for d in demo_documents[:3]:
        docs.append(Document(d.id, d.text + " This passage was revised in the second edition.", d.title))
    return docs


@pytest.fixture(scope="module")
def crash_setup(tmp_path_factory, demo_collection, demo_documents):
    """The batch, the old and new states, and a fresh collection rebuilt from each state's documents."""
    root = tmp_path_factory.mktemp("crash")
    batch = crash_batch(demo_documents)
    batch_file = root / "batch.json"
    batch_file.write_text(
        json.dumps([{"id": d.id, "text": d.text, "title": d.title, "metadata": dict(d.metadata)} for d in batch])
    )
    old = by_id(demo_documents)
    new = {**old, **by_id(batch)}
    new_ref = Collection.create("ref-new", home=root / "refs")
    new_ref.add(list(new.values()))
    refs = {"old": demo_collection, "new": new_ref}  # demo_collection: the demo documents in one fresh add
    expected = {
        (state, q, m): ref.search(q, method=m, top_k=len(ref))
        for state, ref in refs.items()
        for q in CRASH_QUERIES
        for m in METHODS
    }
    yield {"root": root, "batch": batch, "batch_file": batch_file, "old": old, "new": new, "refs": refs, "expected": expected}
    new_ref.close()


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory):
    """The fork server of tests/_crash_writer.py (imports torch once for every kill)."""
    log = tmp_path_factory.mktemp("crash-log") / "writer.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_crash_writer.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    # imports in the background while crash_setup encodes; the first test waits for its "imported" line
    yield {"proc": proc, "log": log, "ready": False}
    proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()


def _wait_for(condition, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; writer log:\n{log.read_text()[-3000:]}")
        time.sleep(0.0005)


def _wal_size(path: Path) -> int:
    try:
        return (path / "store.sqlite-wal").stat().st_size
    except FileNotFoundError:
        return 0


def check_recovered(home: Path, setup) -> str:
    """Open the killed collection: it must hold exactly the old or the new state, and search like a
    fresh collection built from that state's documents. Returns which state."""
    with Collection.open("demo", home=home) as col:
        ids = sorted(set(setup["old"]) | set(setup["new"]))
        got = col.get(ids)
        if got == setup["new"]:
            state = "new"
        elif got == setup["old"]:
            state = "old"
        else:
            mixed = sorted(i for i in ids if got.get(i) not in (setup["old"].get(i), setup["new"].get(i)))
            raise AssertionError(f"a mix of old and new: {len(got)} documents, differing: {mixed[:10]}")
        ref = setup["refs"][state]
        assert len(col) == len(ref) and col.info().chunks == ref.info().chunks
        assert col.generation == (2 if state == "new" else 1)
        assert stale_files(col.path, col.manifest) == []
        for q in CRASH_QUERIES:
            for m in METHODS:
                assert_same_ranking(col.search(q, method=m, top_k=len(ref)), setup["expected"][(state, q, m)])
    return state


def kill_writer(crash_server, batch_file: Path | None, home: Path, flags: Path, point: str, *, action: str = "add",
                name: str = "demo", gen: int = 2) -> tuple[float, bool]:
    """Fork a writer adding ``batch_file`` to ``home/demo``, SIGKILL it at ``point``, wait until it is gone.
    Returns the random delay used and whether add() had already returned when the kill came."""
    server, log = crash_server["proc"], crash_server["log"]
    if not crash_server["ready"]:
        assert server.stdout.readline().strip() == "imported", log.read_text()[-3000:]
        crash_server["ready"] = True
    path = home / name
    flags.mkdir()
    command = {"op": "write", "home": str(home), "name": name, "batch": str(batch_file) if batch_file else None,
               "flags": str(flags), "action": action}
    server.stdin.write(json.dumps(command) + "\n")
    server.stdin.flush()
    pid = int(server.stdout.readline())
    _wait_for(lambda: (flags / "ready").exists(), 120, "the writer to load its model", log)
    wal = _wal_size(path)
    delay = random.uniform(0.0, 3.0) if point == "random" else 0.0
    (flags / "go").touch()
    done = lambda: (flags / "done").exists()  # noqa: E731
    if point == "sqlite-commit":
        _wait_for(lambda: _wal_size(path) > wal or done(), 120, "the SQLite commit", log)
    elif point == "codebook":  # late interaction's first write: its codebook is in place, the segment not yet
        _wait_for(lambda: (path / f"codebook-{gen}").exists() or done(), 120, f"codebook-{gen}", log)
    elif point == "index-files":
        _wait_for(lambda: (path / "segments" / f".seg-{gen}.tmp").exists() or done(), 120, f"segments/.seg-{gen}.tmp", log)
    elif point == "index-renamed":
        _wait_for(lambda: (path / "segments" / f"seg-{gen}").exists() or done(), 120, f"segments/seg-{gen}", log)
    elif point == "after-commit":
        _wait_for(done, 120, "the add to finish", log)
    else:
        time.sleep(delay)
    finished = done()
    os.kill(pid, signal.SIGKILL)
    server.stdin.write(json.dumps({"op": "reap", "pid": pid}) + "\n")
    server.stdin.flush()
    assert server.stdout.readline().split()[:2] == ["reaped", str(pid)]
    return delay, finished


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_writer_killed_mid_add_leaves_the_old_or_the_new_state(point, crash_server, crash_setup, demo_collection, tmp_path):
    home = tmp_path / "home"
    copy_collection(demo_collection.path, home / "demo")
    delay, finished = kill_writer(crash_server, crash_setup["batch_file"], home, tmp_path / "flags", point)
    state = check_recovered(home, crash_setup)
    if point == "early":
        assert state == "old"
    if point == "after-commit":
        assert state == "new"
    print(f"kill point {point}: delay {delay:.3f} s, add finished before the kill: {finished}, recovered: {state}")
    if state == "old" and point == "sqlite-commit":
        # the recovered collection takes the same write again, and ends exactly like a fresh build
        with Collection.open("demo", home=home) as col:
            report = col.add(crash_setup["batch"])
            assert (report.added, report.updated, report.generation) == (12, 3, 2)
        assert check_recovered(home, crash_setup) == "new"


def test_a_long_lived_writer_cleans_up_after_a_killed_one(crash_server, crash_setup, demo_collection, tmp_path):
    """A collection object opened before another process died mid-write must not build on that
    process's uncommitted rows when it writes next."""
    home = tmp_path / "home"
    copy_collection(demo_collection.path, home / "demo")
    with Collection.open("demo", home=home) as col:  # opened (and recovered) before the crash
        _, finished = kill_writer(crash_server, crash_setup["batch_file"], home, tmp_path / "flags", "index-files")
        if finished or json.loads((home / "demo" / "manifest.json").read_text())["generation"] != 1:
            pytest.skip("the writer committed before the kill; nothing left to clean up this time")
        late = Document("late", "A late addition about submarines exploring the deep ocean trenches.")
        report = col.add([late])
        assert (report.added, report.generation) == (1, 2)
    expected = {**crash_setup["old"], "late": late}
    with Collection.open("demo", home=home) as col:
        assert col.get(sorted(set(expected) | set(crash_setup["new"]))) == expected
        assert len(col) == 41 and col.info().chunks == demo_collection.info().chunks + 1
        for method in METHODS:
            ranking = col.search("submarines deep ocean trenches", method=method, top_k=41)
            assert ranking.doc_ids[0] == "late"
            assert not any(d.startswith("new-") for d in ranking.doc_ids)


MERGE_KILL_POINTS = ["early", "index-files", "index-renamed", "random", "after-commit"]


@pytest.fixture(scope="module")
def merge_setup(tmp_path_factory, demo_documents):
    """A collection of several segments with tombstones, and what a fresh build of its documents answers."""
    root = tmp_path_factory.mktemp("merge-crash")
    col = Collection.create("segs", home=root / "home")
    for i in range(0, 40, 8):
        col.add(demo_documents[i : i + 8])
    col.add([Document(d.id, d.text + " Revised.", d.title) for d in demo_documents[:3]])
    col.delete([demo_documents[10].id, demo_documents[30].id])
    docs = col.get([d.id for d in demo_documents])
    segments, gen = len(col.manifest["segments"]), col.generation
    col.close()
    ref = Collection.create("ref", home=root / "refs")
    ref.add(list(docs.values()))
    expected = {(q, m): ref.search(q, method=m, top_k=len(ref)) for q in CRASH_QUERIES for m in METHODS}
    ref.close()
    assert segments == 6
    return {"path": root / "home" / "segs", "docs": docs, "expected": expected, "gen": gen}


@pytest.mark.parametrize("point", MERGE_KILL_POINTS)
def test_a_writer_killed_mid_merge_loses_nothing(point, crash_server, merge_setup, tmp_path):
    home = tmp_path / "home"
    copy_collection(merge_setup["path"], home / "segs")
    delay, finished = kill_writer(crash_server, None, home, tmp_path / "flags", point, action="optimize", name="segs",
                                  gen=merge_setup["gen"] + 1)
    with Collection.open("segs", home=home) as col:
        merged = len(col.manifest["segments"]) == 1
        if point == "after-commit":
            assert merged and col.manifest["tombstones"] is None
        if point == "early" and not finished:
            assert col.generation in (merge_setup["gen"], merge_setup["gen"] + 1)
        assert stale_files(col.path, col.manifest) == []
        assert col.get(sorted(merge_setup["docs"])) == merge_setup["docs"]  # every acknowledged write is there
        for (q, m), want in merge_setup["expected"].items():
            assert_same_ranking(col.search(q, method=m, top_k=len(col)), want)
    print(f"merge kill point {point}: delay {delay:.3f} s, finished: {finished}, merged: {merged}")


LATE_KILL_POINTS = ["early", "codebook", "index-files", "index-renamed", "random", "after-commit"]


@pytest.fixture(scope="module")
def late_crash_setup(tmp_path_factory, demo_documents, colbert_model_path):
    """An empty collection with late interaction (its first write trains the codebook), the batch, and what a
    finished write answers: every document's stored-vector MaxSim and the late first stage's ranking."""
    root = tmp_path_factory.mktemp("late-crash")
    Collection.create("late", home=root / "home", late_interaction=str(colbert_model_path), compression="float16").close()
    batch = demo_documents[:20]
    batch_file = root / "batch.json"
    batch_file.write_text(json.dumps([{"id": d.id, "text": d.text, "title": d.title, "metadata": dict(d.metadata)} for d in batch]))
    ref = Collection.create("ref", home=root / "refs", late_interaction=str(colbert_model_path), compression="float16")
    ref.add(batch)
    expected = {q: _late_scores(ref, q) for q in CRASH_QUERIES}
    ref.close()
    return {"path": root / "home" / "late", "batch_file": batch_file, "docs": by_id(batch), "expected": expected}


def _late_scores(col: Collection, query: str) -> dict[str, float]:
    q = col.late_encoder.encode_queries([query])[0]
    return col.late_view().score_documents(q, list(col.metadata_map))


@pytest.mark.parametrize("point", LATE_KILL_POINTS)
def test_a_late_interaction_writer_killed_mid_first_write_leaves_no_codebook_or_part_behind(
    point, crash_server, late_crash_setup, tmp_path
):
    home = tmp_path / "home"
    copy_collection(late_crash_setup["path"], home / "late")
    delay, finished = kill_writer(crash_server, late_crash_setup["batch_file"], home, tmp_path / "flags", point,
                                  name="late", gen=1)
    with Collection.open("late", home=home) as col:
        assert stale_files(col.path, col.manifest) == []
        codebooks = sorted(p.name for p in col.path.iterdir() if p.name.startswith("codebook-"))
        if col.generation == 0:
            assert len(col) == 0 and col.manifest["late_interaction"]["codebook"] is None and codebooks == []
            assert point not in ("after-commit",)
            col.add(list(late_crash_setup["docs"].values()))  # the same write again ends like a fresh build
        assert col.get(sorted(late_crash_setup["docs"])) == late_crash_setup["docs"]
        assert sorted(p.name for p in col.path.iterdir() if p.name.startswith("codebook-")) == [col.manifest["late_interaction"]["codebook"]]
        for q, want in late_crash_setup["expected"].items():
            got = _late_scores(col, q)
            assert got.keys() == want.keys() and max(abs(got[d] - want[d]) for d in want) < 1e-4
    print(f"late kill point {point}: delay {delay:.3f} s, finished: {finished}")
