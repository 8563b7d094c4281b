"""FASTA/BED reading, genome windows and splits, GenomicBenchmarks folders, the embedded genomes and their task."""

import gzip
import random

import pytest
import torch

from derf_zoo.data import EcoliVsLambdaDataModule, GenomeDataModule, GenomicBenchmarksDataModule
from derf_zoo.data.dna import PAD_ID, DNATokenizer, reverse_complement_ids
from derf_zoo.data.fasta import FastaGenome, InMemoryGenome, Interval, read_bed, read_fasta
from derf_zoo.data.genome import FixedWindows, RandomWindows, split_intervals
from derf_zoo.data.genomes import (
    ECOLI_VS_LAMBDA_CLASSES,
    ecoli_vs_lambda,
    embedded_genome,
    embedded_genome_path,
    write_ecoli_vs_lambda,
)
from derf_zoo.data.genomic_benchmarks import read_genomic_benchmark, write_sequences

TOK = DNATokenizer()


def _random_seq(n, seed):
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


@pytest.fixture
def fasta_gz(tmp_path):
    records = {"chr1": _random_seq(3000, 1), "chr2": _random_seq(1500, 2).lower()}
    path = tmp_path / "toy.fa.gz"
    with gzip.open(path, "wt") as f:
        for name, seq in records.items():
            f.write(f">{name} some description\n")
            f.writelines(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))
    return path, records


# ---- FASTA and BED ---------------------------------------------------------------------------------------


def test_fasta_reader_and_pyfaidx_agree_on_gzip(fasta_gz, tmp_path):
    path, records = fasta_gz
    assert read_fasta(path) == records
    genome = FastaGenome(path, cache_dir=tmp_path / "cache")
    assert genome.names == ["chr1", "chr2"] and genome.length("chr2") == 1500
    assert genome.fetch("chr1", 100, 180) == records["chr1"][100:180]
    assert genome.fetch("chr2", 0, 10) == records["chr2"][:10].upper()  # pyfaidx upper-cases
    assert len(list((tmp_path / "cache").glob("toy.fa.*.fa"))) == 1  # gzip decompressed once to the cache


def test_a_corrupt_or_truncated_gzip_fasta_is_named_and_leaves_no_partial_file(fasta_gz, tmp_path):
    whole = fasta_gz[0].read_bytes()
    truncated, corrupt = tmp_path / "truncated.fa.gz", tmp_path / "corrupt.fa.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    corrupt.write_bytes(whole[:20] + bytes(b ^ 0xFF for b in whole[20:60]) + whole[60:])
    for bad in (truncated, corrupt):
        with pytest.raises(ValueError, match=rf"{bad.name} is a corrupt or truncated gzip file.*partial decompression"):
            FastaGenome(bad, cache_dir=tmp_path / "cache")
        with pytest.raises(ValueError, match=rf"{bad.name} is a corrupt or truncated gzip file"):
            read_fasta(bad)
    assert list((tmp_path / "cache").iterdir()) == []  # no partial decompression left behind


def test_missing_record_is_named_with_the_available_ones(fasta_gz, tmp_path):
    genome = FastaGenome(fasta_gz[0], cache_dir=tmp_path / "cache")
    with pytest.raises(KeyError, match=r"no record 'chrX'; its records are: chr1, chr2"):
        genome.fetch("chrX", 0, 10)
    with pytest.raises(KeyError, match="'chrX'"):
        GenomeDataModule(fasta_gz[0], seq_len=16, record="chrX", cache_dir=tmp_path / "cache").setup()
    with pytest.raises(IndexError, match="outside record 'chr2' of length 1500"):
        genome.fetch("chr2", 1490, 1510)


def test_bad_fasta_and_bed(tmp_path):
    (tmp_path / "bad.fa").write_text("ACGT\n>x\nAC\n")
    with pytest.raises(ValueError, match="before the first '>'"):
        read_fasta(tmp_path / "bad.fa")
    with pytest.raises(FileNotFoundError, match=r"nope\.fa"):
        read_fasta(tmp_path / "nope.fa")
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchr1\t0\t100\ttrain\nchr1 100 200 valid\nchr2\t5\t50\n")
    assert read_bed(bed) == [Interval("chr1", 0, 100, "train"), Interval("chr1", 100, 200, "val"),
                             Interval("chr2", 5, 50, None)]  # fmt: skip
    bed.write_text("chr1\t50\t10\n")
    with pytest.raises(ValueError, match="start 50, end 10"):
        read_bed(bed)


# ---- splits and windows ----------------------------------------------------------------------------------


def test_position_and_record_splits_are_disjoint():
    genome = InMemoryGenome({"a": _random_seq(1000, 3), "b": _random_seq(500, 4)})
    s = split_intervals(genome, val_fraction=0.1, test_fraction=0.1)
    assert s["train"][0] == Interval("a", 0, 800, "train") and s["val"][0] == Interval("a", 800, 900, "val")
    assert s["test"][1] == Interval("b", 450, 500, "test")
    by_record = split_intervals(genome, val_records=["b"])
    assert [iv.record for iv in by_record["train"]] == ["a"] and [iv.record for iv in by_record["val"]] == ["b"]
    with pytest.raises(KeyError, match="'c'"):
        split_intervals(genome, val_records=["c"])
    tagged = split_intervals(genome, [Interval("a", 0, 100, "test")])
    assert tagged["test"] == [Interval("a", 0, 100, "test")] and not tagged["train"]
    # BED splits that share bases would validate on training data: refused, naming both intervals
    touching = [Interval("a", 0, 500, "train"), Interval("a", 500, 600, "val"), Interval("b", 100, 200, "val")]
    assert len(split_intervals(genome, touching)["val"]) == 2  # end-exclusive: adjacent is disjoint
    for bad, message in (([Interval("a", 0, 500, "train"), Interval("a", 450, 600, "val")], "a:0-500 and the val"),
                         ([Interval("a", 0, 900, "train"), Interval("a", 10, 20, "test"),
                           Interval("a", 100, 200, "val")], r"train interval a:0-900 and the test interval a:10-20")):
        with pytest.raises(ValueError, match=message):
            split_intervals(genome, bad)


def test_random_windows_deterministic_per_epoch_and_inside_train():
    seq = _random_seq(2000, 5)
    genome = InMemoryGenome({"a": seq})
    train = [Interval("a", 0, 1600)]
    ds = RandomWindows(genome, train, window=64, samples=32, seed=7)
    again = RandomWindows(genome, train, window=64, samples=32, seed=7)
    for k in range(40):
        _, start, _ = ds.position(k)
        assert 0 <= start <= 1600 - 64
        assert torch.equal(ds[k], again[k]) and ds[k].shape == (64,)
        assert TOK.decode(ds[k]) == seq[start : start + 64]
    epoch0 = [ds.position(k)[1] for k in range(32)]
    epoch1 = [ds.position(32 + k)[1] for k in range(32)]  # EpochSampler's indices of epoch 1
    assert epoch0 != epoch1
    other_seed = RandomWindows(genome, train, window=64, samples=32, seed=8)
    assert epoch0 != [other_seed.position(k)[1] for k in range(32)]


def test_rc_augmentation_flips_about_half():
    seq = _random_seq(500, 6)
    ds = RandomWindows(InMemoryGenome({"a": seq}), [Interval("a", 0, 500)], window=32, samples=400, rc_prob=0.5)
    flips = 0
    for k in range(400):
        _, start, flipped = ds.position(k)
        forward = TOK.encode(seq[start : start + 32])
        assert torch.equal(ds[k], reverse_complement_ids(forward) if flipped else forward)
        flips += flipped
    assert 160 < flips < 240


def test_fixed_windows_tile_without_overlap():
    genome = InMemoryGenome({"a": _random_seq(1000, 7)})
    ds = FixedWindows(genome, [Interval("a", 900, 1000)], window=30)
    assert ds.starts == [("a", 900), ("a", 930), ("a", 960)]
    capped = FixedWindows(genome, [Interval("a", 0, 1000)], window=10, max_windows=5)
    assert [s for _, s in capped.starts] == [0, 250, 500, 740, 990]


def test_genome_datamodule_causal_and_masked_windows():
    dm = GenomeDataModule("lambda", seq_len=128, mode="causal", batch_size=4, samples_per_epoch=8,
                          max_eval_windows=16, test_fraction=0.1)  # fmt: skip
    dm.setup()
    loader = dm.train_dataloader()
    first = next(iter(loader))
    assert first.shape == (4, 129) and first.dtype == torch.long  # one extra base for the shifted target
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader)), first)  # new windows each epoch
    loader.sampler.set_epoch(0)
    assert torch.equal(next(iter(loader)), first)  # ... and the same ones for the same epoch
    val, test = dm.splits["val"][0], dm.splits["test"][0]
    assert dm.splits["train"][0].end <= val.start < val.end <= test.start
    assert next(iter(dm.val_dataloader())).shape == (4, 129) and len(dm.test_set) <= 16
    masked = GenomeDataModule("lambda", seq_len=128, mode="masked", batch_size=2, samples_per_epoch=2)
    masked.setup()
    assert next(iter(masked.train_dataloader())).shape == (2, 128)


def test_genome_datamodule_bad_input():
    with pytest.raises(ValueError, match="seq_len=2048 is longer than the model's context max_len=1024"):
        GenomeDataModule("lambda", seq_len=2048, max_len=1024)
    with pytest.raises(ValueError, match=r"Unknown mode 'bert'.*Valid choices: causal, masked"):
        GenomeDataModule("lambda", mode="bert")
    with pytest.raises(ValueError, match="holds a window of 60001 bases"):
        GenomeDataModule("lambda", seq_len=60000).setup()
    with pytest.raises(FileNotFoundError, match="No FASTA file"):
        GenomeDataModule("no_such_genome.fa").setup()


def test_unknown_characters_in_a_genome_are_reported_once():
    genome = InMemoryGenome({"a": "ACGTRYACGT" * 10})
    ds = FixedWindows(genome, [Interval("a", 0, 100)], window=10)
    with pytest.warns(UserWarning, match=r"2 characters outside ACGTN \('R', 'Y'\)"):
        ds[0]
    assert ds[1].tolist().count(6) == 2  # later windows: still [UNK], not reported again


# ---- GenomicBenchmarks -----------------------------------------------------------------------------------


def _benchmark(root, n=20, classes=("neg", "pos")):
    splits = {s: [(_random_seq(30 + i % 7, i + 100 * k), k) for k in range(len(classes)) for i in range(n)]
              for s in ("train", "test")}  # fmt: skip
    return write_sequences(root, "toy_task", splits, classes)


def test_genomic_benchmarks_folder_and_protocol(tmp_path):
    _benchmark(tmp_path)
    data, classes = read_genomic_benchmark(tmp_path, "toy_task")
    assert classes == ["neg", "pos"] and len(data["train"]) == 40 and {y for _, y in data["test"]} == {0, 1}
    dm = GenomicBenchmarksDataModule(tmp_path, "toy_task", max_length=40, batch_size=8, split_seed=3)
    dm.setup()
    assert dm.num_classes == 2 and (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (36, 4, 40)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 40) and (x[:, :4] == PAD_ID).all()  # left padding (sequences of 30..36 bases)
    train_seqs = {TOK.decode(r) for r in dm.train_set.ids}
    val_seqs = {TOK.decode(r) for r in dm.val_set.ids}
    assert not train_seqs & val_seqs  # the 90/10 split is a partition
    other = GenomicBenchmarksDataModule(tmp_path, "toy_task", max_length=32, split_seed=4)
    other.setup()
    assert {TOK.decode(r) for r in other.val_set.ids} != val_seqs  # the seed picks the split
    long = [s for s, _ in data["test"] if len(s) > 32]
    assert {s[:32] for s in long} <= {TOK.decode(r) for r in other.test_set.ids}  # truncation keeps the start
    assert len(dm.train_eval_dataloader().dataset) == 36


def test_genomic_benchmarks_errors_name_the_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="No GenomicBenchmarks task 'toy_task'"):
        read_genomic_benchmark(tmp_path, "toy_task")
    folder = _benchmark(tmp_path)
    with pytest.raises(FileNotFoundError, match="tasks there: toy_task"):
        read_genomic_benchmark(tmp_path, "human_or_worm")
    for f in (folder / "test" / "pos").iterdir():
        f.unlink()
    (folder / "test" / "pos").rmdir()
    with pytest.raises(FileNotFoundError, match=r"test lacks the class folder\(s\) \['pos'\]"):
        read_genomic_benchmark(tmp_path, "toy_task")
    import shutil

    shutil.rmtree(folder / "test")
    with pytest.raises(FileNotFoundError, match="has no 'test' split"):
        read_genomic_benchmark(tmp_path, "toy_task")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _benchmark(tmp_path)


# ---- embedded genomes and E. coli vs lambda ----------------------------------------------------------------


def test_embedded_genomes():
    lam, eco = embedded_genome("lambda"), embedded_genome("ecoli")
    assert lam.names == ["NC_001416.1"] and lam.length("NC_001416.1") == 48_502
    assert eco.names == ["NC_008253.1"] and eco.length("NC_008253.1") == 1_000_000
    assert eco.fetch("NC_008253.1", 0, 20) == "AGCTTTTCATTCTGACTGCA"
    assert set(lam.records["NC_001416.1"]) == set("ACGT")
    with pytest.raises(ValueError, match="human"):
        embedded_genome_path("human")


def test_ecoli_vs_lambda_is_balanced_deterministic_and_split_by_position():
    data = ecoli_vs_lambda(window=200)
    assert {k: len(v) for k, v in data.items()} == {"train": 388, "val": 48, "test": 48}
    for items in data.values():
        assert sum(y for _, y in items) * 2 == len(items) and all(len(s) == 200 for s, _ in items)
    assert ecoli_vs_lambda(window=200) == data
    phage = embedded_genome("lambda").records["NC_001416.1"]
    starts = {split: [phage.find(s) for s, y in items if y == 1] for split, items in data.items()}
    assert max(starts["train"]) + 200 <= min(starts["val"]) and max(starts["val"]) + 200 <= min(starts["test"])
    seqs = {split: {s for s, _ in items} for split, items in data.items()}
    assert not (seqs["train"] & seqs["val"]) and not (seqs["train"] & seqs["test"])


def test_ecoli_vs_lambda_datamodule_and_folder_round_trip(tmp_path):
    dm = EcoliVsLambdaDataModule(window=100, batch_size=16, rc_aug=True)
    dm.setup()
    assert dm.classes == ECOLI_VS_LAMBDA_CLASSES and dm.num_classes == 2
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 100) and set(y.tolist()) <= {0, 1}
    folder = write_ecoli_vs_lambda(tmp_path, window=100)
    gb = GenomicBenchmarksDataModule(tmp_path, folder.name, max_length=100)
    gb.setup()
    assert gb.classes == ["ecoli", "lambda"]
    assert {TOK.decode(r) for r in gb.test_set.ids} == {s for s, _ in ecoli_vs_lambda(window=100)["test"]}


def test_loader_arguments_are_checked():
    with pytest.raises(ValueError, match=r"GenomeDataModule: batch_size must be an integer >= 1 .*got 0\."):
        GenomeDataModule("lambda", batch_size=0)
    with pytest.raises(ValueError, match=r"EcoliVsLambdaDataModule: num_workers must be an integer >= 0 .*got -1\."):
        EcoliVsLambdaDataModule(num_workers=-1)
    with pytest.raises(ValueError, match=r"GenomicBenchmarksDataModule: batch_size .*got 2\.5"):
        GenomicBenchmarksDataModule("root", "task", batch_size=2.5)


def test_write_sequences_overwrite_replaces_the_whole_task(tmp_path):
    def splits(n, classes):
        return {s: [(_random_seq(20, i), i % len(classes)) for i in range(n)] for s in ("train", "test")}

    write_sequences(tmp_path, "toy_task", splits(5, "abc"), ("a", "b", "c"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_sequences(tmp_path, "toy_task", splits(2, "ab"), ("a", "b"))
    assert len(read_genomic_benchmark(tmp_path, "toy_task")[0]["train"]) == 5  # refused: nothing deleted
    write_sequences(tmp_path, "toy_task", splits(2, "ab"), ("a", "b"), overwrite=True)
    data, classes = read_genomic_benchmark(tmp_path, "toy_task")
    assert classes == ["a", "b"]  # the old class folder "c" is gone
    assert [len(data[s]) for s in ("train", "test")] == [2, 2]  # and so are the old 2.txt ... 4.txt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_task"]  # no staging or retired folder left
