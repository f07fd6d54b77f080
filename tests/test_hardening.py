"""Issue 16: what users' files and machines really do — memory bombs, full disks, FIFOs, hostile configs, races.

Every test here failed on the code before the fix it covers. The memory-bomb refusals run in one child process
under an address-space limit and report its peak RSS.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from guidegap.checkpoints.format import Checkpoint, save_checkpoint
from guidegap.cli.main import main
from guidegap.errors import InputError

from conftest import tiny_dit, tiny_unet

AUDIT = ["--num-samples", "2", "--num-steps", "2", "--json"]


def _one_line_exit_2(argv: list[str], capfd) -> str:
    """Run the CLI in-process: exit code 2 and one line on stderr (fd level: library loggers too), no escapes."""
    code = main(argv)
    err = capfd.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "\x1b" not in err, err
    return err


def _mlp_checkpoint(path: Path, **fields) -> Path:
    from guidegap.oracle.mlp import MLPDenoiser

    torch.manual_seed(0)
    model = MLPDenoiser(sample_shape=(1, 2, 2), num_classes=10, hidden=16, depth=1, time_dim=8)
    values = {"model_class": "MLPDenoiser", "model_config": model.config, "state_dict": model.state_dict(), **fields}
    return save_checkpoint(Checkpoint(**values), path)


def _mlp_config() -> dict:
    from guidegap.oracle.mlp import MLPDenoiser

    return dict(MLPDenoiser(sample_shape=(1, 2, 2), num_classes=10, hidden=16, depth=1, time_dim=8).config)


@pytest.mark.parametrize("field, value", [("model_config", "[1, 2]"), ("model_config", "null"), ("scheduler_config", "[1]"),
                                          ("metadata", "[" * 100_000 + "]" * 100_000)])
def test_a_checkpoint_config_that_is_not_a_json_object_is_one_clear_line(tmp_path, capfd, field, value):
    raw = torch.load(_mlp_checkpoint(tmp_path / "ok.pt"), weights_only=True)
    torch.save({**raw, field: value}, tmp_path / "bad.pt")
    err = _one_line_exit_2(["audit", str(tmp_path / "bad.pt"), "--teacher", "oracle", *AUDIT], capfd)
    assert "must be a JSON object" in err or "incomplete or damaged (RecursionError" in err, err


def _unet_folder(path: Path, **config_edits) -> Path:
    tiny_unet(4).save_pretrained(path)
    config_file = path / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **config_edits}))
    return path


# -- 4. memory bombs: refused with one line before allocating, peak RSS < 1 GB under an address-space limit ---------
def _rezip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename.split("/", 1)[1], zin.read(info)))
    return dst


def _torch_archive(tmp: Path, name: str, pickle_bytes: bytes, storages: dict[str, int] | None = None) -> Path:
    """A torch.save zip archive with the given ``data.pkl`` and storage records of deflated zeros (name -> bytes)."""
    base = tmp / "base.pt"
    torch.save({"w": torch.zeros(4)}, base)
    path = tmp / name
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        prefix = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            entry = info.filename.split("/", 1)[1]
            if entry == "data.pkl":
                zout.writestr(info.filename, pickle_bytes)
            elif not entry.startswith("data/"):
                zout.writestr(info.filename, zin.read(info))
        for key, nbytes in (storages or {}).items():
            info = zipfile.ZipInfo(f"{prefix}/data/{key}")
            info.compress_type = zipfile.ZIP_DEFLATED
            with zout.open(info, "w", force_zip64=True) as handle:
                chunk = bytes(1 << 20)
                for _ in range(nbytes >> 20):
                    handle.write(chunk)
    return path


def _pickle_bomb(tmp: Path, name: str, global_name: bytes, size: int) -> Path:
    """``GLOBAL(size)`` as the whole pickle: a few hundred bytes asking for ``size`` elements."""
    return _torch_archive(tmp, name, b"\x80\x02c" + global_name + b"\n\x8a\x05" + size.to_bytes(5, "little") + b"\x85R.")


def _zip_bomb(tmp: Path, nbytes: int = 1 << 30) -> Path:
    """A state dict of one float tensor whose storage record is deflated zeros: ~1 MB on disk, 1 GiB unpacked."""
    import io
    import pickle

    storage = object()

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (nbytes // 4,), (1,), False, OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", nbytes // 4) if obj is storage else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": Tensor()})
    return _torch_archive(tmp, "zipbomb.pt", buffer.getvalue(), {"0": nbytes})


def _netcdf_bomb(audit_file: Path, tmp: Path) -> Path:
    """A valid audit file plus a never-written 4 GiB variable (h5py allocates nothing until it is read)."""
    import h5netcdf

    path = tmp / "bomb.nc"
    path.write_bytes(audit_file.read_bytes())
    with h5netcdf.File(path, "a") as handle:
        handle.dimensions["huge"] = 1 << 29
        handle.create_variable("huge_variable", ("huge",), "f8")
    return path


BOMB_RUNNER = textwrap.dedent("""
    import io, json, resource, sys
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from guidegap.cli.main import main
    results = []
    for argv in json.loads(sys.argv[2]):
        err, sys.stderr = sys.stderr, io.StringIO()
        try:
            code = main(argv)
        finally:
            text, sys.stderr = sys.stderr.getvalue(), err
        results.append([code, text])
    # VmHWM: this process's own peak (getrusage's ru_maxrss survives fork + exec and would count pytest's RSS)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    results.append(int(hwm.split()[1]) * 1024)
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def audit_file(tmp_path_factory) -> Path:
    import guidegap
    from guidegap.oracle import GaussianMixture, shrunk_student
    from guidegap.recording.schedulers import default_scheduler

    oracle = GaussianMixture.random(seed=0).denoiser(default_scheduler())
    path = tmp_path_factory.mktemp("audit") / "audit.nc"
    guidegap.audit(shrunk_student(oracle, 0.5), oracle, num_samples=4, num_steps=4, n_boot=50).save(path)
    return path


def test_memory_bombs_are_refused_in_one_line_with_peak_rss_under_1_gb(tmp_path, audit_file):
    cases = {
        "wide config": (["audit", str(_unet_folder(tmp_path / "wide", block_out_channels=[4096, 4096],
                                                    num_class_embeds=100_000_000))], "the config implies"),
        "deep config": (["audit", str(_unet_folder(tmp_path / "deep", layers_per_block=1_000_000))], "layers_per_block"),
        "bytearray(N)": (["audit", str(_pickle_bomb(tmp_path, "b.pt", b"builtins\nbytearray", 4_200_000_000)),
                          "--factory", "os:getcwd"], "GiB of buffers"),
        "FloatStorage(N)": (["audit", str(_pickle_bomb(tmp_path, "f.pt", b"torch\nFloatStorage", 1_100_000_000)),
                             "--factory", "os:getcwd"], "GiB of buffers"),
        "zip bomb": (["audit", str(_zip_bomb(tmp_path)), "--factory", "os:getcwd"], "unpacks to 1.00 GiB"),
        "UNet as scheduler": (["audit", str(_mlp_checkpoint(tmp_path / "s.pt", scheduler_config={
            "_class_name": "UNet2DModel", "block_out_channels": [4096, 4096, 4096, 4096]})), "--teacher", "oracle", *AUDIT],
            "not a diffusers scheduler class"),
        "netCDF 4 GiB variable": (["plot", str(_netcdf_bomb(audit_file, tmp_path)), "--figure", str(tmp_path / "f.png")],
                                  "GiB of variables"),
        "expanded tensor": (["audit", str(_mlp_checkpoint(tmp_path / "x.pt", model_config={**_mlp_config(), "hidden": 20_000,
                                                                                             "depth": 2},
                                                           state_dict={"fill": torch.zeros(1).expand(3 * 10**9)})),
                             "--teacher", "oracle", *AUDIT], "an expanded view"),
        "DiT float sample_size": (["audit", str(save_checkpoint(Checkpoint(
            model_class="DiTTransformer2DModel", model_config={**dict(tiny_dit(4).config), "sample_size": 8192.0},
            state_dict=tiny_dit(4).state_dict()), tmp_path / "dit.pt")), "--teacher", "oracle", *AUDIT], "must be an integer"),
        "schedule of 4e7 steps": (["audit", str(_mlp_checkpoint(tmp_path / "t.pt", scheduler_config={
            "_class_name": "DDPMScheduler", "num_train_timesteps": 40_000_000})), "--teacher", "oracle", *AUDIT],
            "1 to 100,000 training steps"),
        "MLP of 1e9 timesteps": (["audit", str(_mlp_checkpoint(tmp_path / "m.pt", model_config={
            **_mlp_config(), "num_train_timesteps": 10**9})), "--teacher", "oracle", *AUDIT], "num_train_timesteps"),
    }
    limit = 3 << 30  # the address space: a bomb that got past the checks would fail to allocate, not swap
    argvs = [argv for argv, _ in cases.values()]
    done = subprocess.run([sys.executable, "-c", BOMB_RUNNER, str(limit), json.dumps(argvs)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    *results, peak_rss = json.loads(done.stdout.strip().splitlines()[-1])
    for (name, (_, expected)), (code, err) in zip(cases.items(), results):
        assert code == 2 and len(err.strip().splitlines()) == 1, (name, err)
        assert expected in err, (name, err)
    print(f"peak RSS of the child that refused {len(cases)} memory bombs: {peak_rss / 2**20:.0f} MiB")
    assert peak_rss < 1 << 30, peak_rss


def test_real_checkpoints_pass_the_allocation_bound(tmp_path):
    from guidegap.checkpoints.archive import check_torch_archive, pickle_allocation

    path = tmp_path / "real.pt"
    state = OrderedDict((f"layer{i}.weight", torch.randn(64, 64)) for i in range(20))
    torch.save({"state_dict": state, "step": 10, "names": ["a"] * 3, "rng": torch.get_rng_state()}, path)
    check_torch_archive(path)
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert 20 * 64 * 64 * 4 <= pickle_allocation(pickled) <= 20 * 64 * 64 * 4 + 10_000


# -- 5. scheduler configs may name scheduler classes only; the hub stays offline ---------------------------------------
@pytest.mark.parametrize("name", ["WanModularPipeline", "UNet2DModel", "SchedulerMixin", "os.system"])
def test_a_stored_scheduler_config_may_name_scheduler_classes_only(tmp_path, capfd, name):
    path = _mlp_checkpoint(tmp_path / "student.pt", scheduler_config={"_class_name": name, "pretrained_model_name_or_path": "x/y"})
    err = _one_line_exit_2(["audit", str(path), "--teacher", "oracle", *AUDIT], capfd)
    assert "not a diffusers scheduler class" in err


def test_the_scheduler_flag_takes_scheduler_classes_only(capfd):
    err = _one_line_exit_2(["audit", "--example", "oracle", "--scheduler", "WanModularPipeline", *AUDIT], capfd)
    assert "not a diffusers scheduler class" in err


SEEN_ENV: dict[str, str | None] = {}


def offline_probe_factory() -> torch.nn.Module:
    """A --factory that records what the hub would see while guidegap loads a model."""
    import socket

    SEEN_ENV["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE")
    try:
        socket.create_connection(("huggingface.co", 443), timeout=0.01).close()
    except OSError:
        pass
    from guidegap.oracle.mlp import MLPDenoiser

    return MLPDenoiser(sample_shape=(1, 2, 2), num_classes=10, hidden=16, depth=1, time_dim=8)


def test_loads_run_with_the_hub_offline_and_open_no_connection(tmp_path, monkeypatch):
    import socket

    from guidegap.checkpoints import load_model
    from guidegap.oracle.mlp import MLPDenoiser

    connections: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connections.append(address))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    path = tmp_path / "state.pt"
    torch.save(MLPDenoiser(sample_shape=(1, 2, 2), num_classes=10, hidden=16, depth=1, time_dim=8).state_dict(), path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    load_model(path, factory="test_hardening:offline_probe_factory")
    assert SEEN_ENV["HF_HUB_OFFLINE"] == "1" and "HF_HUB_OFFLINE" not in os.environ  # restored after the load
    # the probe's own connection attempt is the only one, and it happened with the hub offline
    assert len(connections) <= 1


# -- 6. trust per file ----------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_trust_pickle_is_per_file_and_the_bare_flag_trusts_the_student_only(tmp_path, capfd):
    from guidegap.oracle.mlp import MLPDenoiser

    marker = tmp_path / "teacher-code-ran"
    student = tmp_path / "student.pt"
    torch.save(MLPDenoiser(sample_shape=(1, 2, 2), num_classes=10, hidden=16, depth=1, time_dim=8), student)  # needs trust
    teacher = tmp_path / "teacher.pt"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, teacher)
    for flag in (["--trust-pickle"], ["--trust-pickle", "student"]):
        err = _one_line_exit_2(["audit", str(student), *flag, "--teacher", str(teacher), *AUDIT], capfd)
        assert err.startswith("guidegap: error: teacher:") and "--trust-pickle teacher" in err, err
    assert not marker.exists()
    err = _one_line_exit_2(["audit", str(student), "--teacher", "oracle", *AUDIT], capfd)
    assert "--trust-pickle student" in err


def test_help_says_that_factory_and_trust_pickle_run_code(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "imports that module and runs the function" in text
    assert "runs code from the file" in text and "{student,teacher,both}" in text


# -- 8. non-regular files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["student", "teacher", "plot"])
def test_a_fifo_is_refused_instead_of_blocking(tmp_path, capfd, role):
    fifo = tmp_path / ("pipe.nc" if role == "plot" else "pipe.pt")
    os.mkfifo(fifo)
    argv = {"student": ["audit", str(fifo), "--factory", "os:getcwd"],
            "teacher": ["audit", str(_mlp_checkpoint(tmp_path / "s.pt")), "--teacher", str(fifo), *AUDIT],
            "plot": ["plot", str(fifo), "--figure", str(tmp_path / "f.png")]}[role]

    def blocked(*_):
        raise AssertionError("blocked reading a FIFO")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)
    try:
        err = _one_line_exit_2(argv, capfd)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "named pipe (FIFO)" in err and "regular file" in err


# -- 10. the one-line promise: escapes from files, third-party warnings ---------------------------------------------
def test_escape_sequences_from_a_file_are_not_printed(tmp_path, capfd):
    fake = "\x1b[2K\x1b[1G\x1b[32mVERDICT: HEALTHY\x1b[0m"
    err = _one_line_exit_2(["audit", str(_unet_folder(tmp_path / "ansi", _class_name=fake)), *AUDIT], capfd)
    assert "\\x1b[32mVERDICT" in err or "x1b" in err
    from guidegap.errors import printable

    assert printable("a\u202eb\x07") == "a\\u202eb\\x07"
    assert str(InputError("bad \x1b[31m\nvalue")) == "bad \\x1b[31m value"


def test_library_warnings_do_not_break_the_one_line_promise(tmp_path, capfd):
    path = tmp_path / "protocol4.pt"
    torch.save({"w": torch.zeros(1)}, path, pickle_protocol=4)  # torch warns about the protocol while reading it
    _one_line_exit_2(["audit", str(path), "--factory", "os:getcwd", *AUDIT], capfd)
    folder = _unet_folder(tmp_path / "extra", not_a_unet_option=1)  # diffusers logs a warning about the extra key
    code = main(["audit", str(folder), "--teacher", str(folder), *AUDIT])
    captured = capfd.readouterr()
    assert code in (0, 1) and captured.err.strip() == "", captured.err


# -- 11. clear messages: path, what was wrong, the fix -------------------------------------------------------------
def test_a_damaged_safetensors_file_says_why_and_how_to_fix_it(tmp_path, capfd):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\xff" * 8 + b"{}")
    err = _one_line_exit_2(["audit", str(path), "--factory", "os:getcwd"], capfd)
    assert str(path) in err and "header" in err.lower()
    assert "re-download" in err


def test_weights_that_do_not_fit_name_the_keys(tmp_path, capfd):
    folder = _unet_folder(tmp_path / "unet")
    tiny_unet(6).save_pretrained(tmp_path / "six")
    (tmp_path / "six" / "config.json").replace(folder / "config.json")
    err = _one_line_exit_2(["audit", str(folder), *AUDIT], capfd)
    assert "class_embedding.weight" in err and "file (5, " in err and "model (7, " in err, err


def test_a_deeply_nested_config_is_a_clear_error(tmp_path, capfd):
    folder = _unet_folder(tmp_path / "deep")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    err = _one_line_exit_2(["audit", str(folder), *AUDIT], capfd)
    assert "RecursionError" not in err and "config.json" in err and "JSON" in err
    from guidegap.checkpoints import load_model

    with pytest.raises(InputError, match="nested too deeply"):
        load_model(folder)


def test_permission_denied_names_the_file_and_the_fix(tmp_path, capfd, monkeypatch):
    path = _mlp_checkpoint(tmp_path / "student.pt")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    err = _one_line_exit_2(["audit", str(path), "--teacher", "oracle", *AUDIT], capfd)
    assert str(path) in err and "permission denied" in err and "chmod" in err


def test_a_missing_class_embedding_says_which_model_lacks_it(tmp_path, capfd):
    good = _unet_folder(tmp_path / "good")
    plain = tmp_path / "plain"
    tiny_unet(4, num_class_embeds=None).save_pretrained(plain)
    err = _one_line_exit_2(["audit", str(good), "--teacher", str(plain), *AUDIT], capfd)
    assert err.startswith("guidegap: error: teacher:") and "class-label embedding" in err


def test_student_and_teacher_with_different_noise_schedules_are_refused(tmp_path, capfd):
    from guidegap.training.noise import noise_scheduler

    def with_schedule(name: str, schedule: str) -> Path:
        scheduler = noise_scheduler(schedule, 1000)
        return _mlp_checkpoint(tmp_path / name, scheduler_config={"_class_name": type(scheduler).__name__, **scheduler.config})

    err = _one_line_exit_2(["audit", str(with_schedule("s.pt", "linear")), "--teacher", str(with_schedule("t.pt", "cosine")),
                            *AUDIT], capfd)
    assert "different noise schedules" in err and "student: linear" in err
    code = main(["audit", str(with_schedule("s2.pt", "linear")), "--teacher", str(with_schedule("t2.pt", "linear")), *AUDIT])
    assert code in (0, 1), capfd.readouterr().err


# -- 12. deterministic checkpoint bytes ------------------------------------------------------------------------------
def test_checkpoint_bytes_do_not_depend_on_set_order(tmp_path):
    from guidegap.training.noise import noise_scheduler

    config = {"_class_name": "DDPMScheduler", **noise_scheduler("linear", 1000).config}
    assert len(config["_use_default_values"]) > 2  # diffusers lists a set here, in hash order
    shuffled = {**config, "_use_default_values": list(reversed(config["_use_default_values"]))}
    digests = {hashlib.sha256(_mlp_checkpoint(tmp_path / f"{i}.pt", scheduler_config=c).read_bytes()).hexdigest()
               for i, c in enumerate((config, shuffled))}
    assert len(digests) == 1


def test_checkpoint_bytes_are_the_same_under_another_hash_seed(tmp_path):
    script = textwrap.dedent("""
        import sys
        from guidegap.checkpoints.format import Checkpoint, save_checkpoint
        from guidegap.training.noise import noise_scheduler
        s = noise_scheduler("linear", 1000)
        save_checkpoint(Checkpoint("MLPDenoiser", {}, {}, scheduler_config={"_class_name": "DDPMScheduler", **s.config},
                                   metadata={"tags": {"b", "a", "c"}}), sys.argv[1])
    """)
    digests = set()
    for seed in ("1", "2"):
        path = tmp_path / f"seed{seed}.pt"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120,
                       env={**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"})
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


# -- 9. temporary files left by killed writers ----------------------------------------------------------------------
def test_stale_temporary_files_of_ours_are_removed_and_live_ones_kept(tmp_path, audit_file):
    import fcntl

    import guidegap

    target = tmp_path / "audit.nc"
    stale = tmp_path / ".audit.nc.0123456789ab.tmp"
    fresh = tmp_path / ".audit.nc.aaaaaaaaaaaa.tmp"
    locked = tmp_path / ".audit.nc.bbbbbbbbbbbb.tmp"
    foreign = tmp_path / ".audit.nc.notours.tmp"
    other = tmp_path / ".other.nc.0123456789ab.tmp"
    for path in (stale, fresh, locked, foreign, other):
        path.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    for path in (stale, locked, foreign, other):
        os.utime(path, (old, old))
    holder = os.open(locked, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a live writer
    try:
        guidegap.save_dataset(guidegap.load_dataset(audit_file), target)
    finally:
        os.close(holder)
    assert not stale.exists()
    assert fresh.exists() and locked.exists() and foreign.exists() and other.exists()
    # a killed checkpoint writer's leftover goes with the next checkpoint write
    leftover = tmp_path / ".checkpoint.pt.0123456789ab.tmp"
    leftover.write_bytes(b"x" * 1000)
    os.utime(leftover, (old, old))
    _mlp_checkpoint(tmp_path / "checkpoint.pt")
    assert not leftover.exists()


KILLED_AUDIT = textwrap.dedent("""
    import os, signal, sys
    import guidegap.atomic as atomic
    real = atomic._write_all
    def write_then_die(fd, data):
        real(fd, bytes(data)[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    atomic._write_all = write_then_die
    import guidegap
    guidegap.save_dataset(guidegap.load_dataset(sys.argv[1]), sys.argv[2])
""")


def test_a_killed_audit_write_leaves_a_temp_file_the_next_write_removes(tmp_path, audit_file):
    import guidegap

    target = tmp_path / "audit.nc"
    done = subprocess.run([sys.executable, "-c", KILLED_AUDIT, str(audit_file), str(target)], timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".audit.nc.")]
    os.utime(left, (time.time() - 120, time.time() - 120))
    guidegap.save_dataset(guidegap.load_dataset(audit_file), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.nc"]


# -- 3. an unwritable or full --out: exit 2, one line, before the compute, old file intact, no temp file --------------
FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # writes past the limit fail with EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    from guidegap.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


def test_out_on_a_full_disk_is_refused_before_the_audit_and_keeps_the_old_file(tmp_path, audit_file):
    out = tmp_path / "audit.nc"
    out.write_bytes(audit_file.read_bytes())
    before = out.read_bytes()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "audit", "--example", "oracle", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(done.stderr.strip().splitlines()) == 1 and "before the audit runs" in done.stderr, done.stderr
    assert done.stdout == ""  # no report: the audit never ran
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.nc"]
    assert time.perf_counter() - started < 120


# -- 1. two writers on one GuidanceMonitor store ---------------------------------------------------------------------
def _monitor(store: Path):
    from guidegap.monitoring import GuidanceMonitor

    return GuidanceMonitor("oracle", store=store, num_samples=2, sampling_steps=3, n_boot=10, raise_on=None)


def test_a_log_whose_snapshot_lists_conflicting_sizes_is_repaired_before_the_append(tmp_path):
    import zarr

    from guidegap.monitoring import load_log

    store = tmp_path / "guidance.zarr"
    monitor = _monitor(store)
    for step in (10, 20, 30):
        monitor.check(step, monitor.teacher)
    group = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    group["rho"].resize((2,))  # what a competing writer's half-done append leaves, snapshot and all
    zarr.consolidate_metadata(str(store))
    with pytest.raises(ValueError):
        load_log(store)  # conflicting sizes: unreadable
    monitor.check(40, monitor.teacher)
    assert load_log(store)["training_step"].values.tolist() == [10, 20, 40]


OTHER_WRITER = textwrap.dedent("""
    import sys
    from guidegap.monitoring import GuidanceMonitor
    monitor = GuidanceMonitor("oracle", store=sys.argv[1], num_samples=2, sampling_steps=3, n_boot=10, raise_on=None)
    monitor.check(10, monitor.teacher)
    print("ready", flush=True)
    sys.stdin.read()  # stay alive until the test closes our stdin
""")


def test_a_second_live_writer_is_refused_by_name_and_a_dead_ones_log_continues(tmp_path):
    from guidegap.monitoring import load_log

    store = tmp_path / "guidance.zarr"
    other = subprocess.Popen([sys.executable, "-c", OTHER_WRITER, str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert other.stdout.readline().strip() == "ready"
        monitor = _monitor(store)
        with pytest.raises(InputError, match=f"another live process \\(pid {other.pid} on host"):
            monitor.check(20, monitor.teacher)
    finally:
        other.stdin.close()
        other.wait(timeout=60)
    monitor.check(20, monitor.teacher)  # that writer is gone: a relaunched run continues its log
    assert load_log(store)["training_step"].values.tolist() == [10, 20]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".guidance.zarr.lock", "guidance.zarr"]
