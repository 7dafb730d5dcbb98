"""`vllm_nccl`: full weights from a GPU trainer to a GPU vLLM server over NCCL, through vLLM's weight-transfer API.

Design: the trainer joins vLLM's NCCL weight-transfer group as rank 0 *without vLLM installed*. vLLM 0.32 offers
two rendezvous modes for its dense NCCL engine (`vllm/distributed/weight_transfer/nccl_common.py`):

- `master_address` + `master_port`: a `StatelessProcessGroup` (a torch `TCPStore`) over which rank 0 sends its
  `ncclUniqueId` as a *pickled vLLM ctypes object* (`StatelessProcessGroup.broadcast_obj`). A trainer without
  vLLM cannot produce that pickle, and torch.distributed's own NCCL process group exchanges its id under other
  store keys, in another format: neither can talk to vLLM's workers.
- `nccl_unique_id_b64`: the trainer mints the 128-byte `ncclUniqueId` itself and hands it to the workers in the
  HTTP request; vLLM documents this mode for peers without vLLM (its example is a JAX trainer). We use it.

So this module binds the few NCCL calls it needs with ctypes (`libnccl.so.2`, which CUDA builds of torch already
ship as the `nvidia-nccl-cu12` wheel): `ncclGetUniqueId`, `ncclCommInitRank`, `ncclAllReduce` (the one-element
warm-up every vLLM communicator issues right after init), `ncclBroadcast`, `ncclCommAbort`. The wire format is
vLLM's dense NCCL engine's: rank 0 broadcasts every tensor in the announced order, either one NCCL broadcast per
tensor (`packed: false`) or concatenated as raw bytes into uint8 chunks that close right after the tensor that
takes a chunk past `packed_buffer_size_bytes` (`packed: true`, vLLM's default, fewer and larger broadcasts).

Protocol (every step is an HTTP route of a server started with VLLM_SERVER_DEV_MODE=1 and
`--weight-transfer-config '{"backend": "nccl"}'`):

- `start`: `GET /get_world_size` (TP x PP x DP workers; the group is 1 + that, the workers at ranks
  1 + dp_index x TP x PP + worker rank), then `POST /init_weight_transfer_engine` *while* this process runs
  `ncclCommInitRank` as rank 0 and the warm-up all_reduce: both block until every rank has joined.
- `push`: inside `engine.updating(version)` (ajet's own requests drained): `POST /pause?mode=wait` (vLLM stops
  scheduling and clears its prefix cache, whose KV was computed with the old weights), `POST /start_weight_update`
  (the workers prepare a layerwise reload), then `POST /update_weights` with the names, dtypes and shapes *while*
  this process broadcasts the bytes (the request returns once the workers have received and loaded every
  tensor), `POST /finish_weight_update` with the version (the workers finalize the reload; vLLM records the
  version), `POST /resume`, and `GET /weight_info` to check that the server reports the version.
- `aclose`: `POST /shutdown_weight_transfer_engine`, then abort the local communicator.

What is sent: `policy.named_parameters()` under their Hugging Face names, cast to the server's dtype
(`model.autocast`, else `model.dtype`; the workers copy into their own dtype anyway, this halves the bytes of an
fp32 policy served in bf16). A tied output head is sent as `lm_head.weight` too: vLLM's layerwise reload does not
refresh a tied head (see `ajet.core.engines.vllm_model`), so ajet starts servers for full-weight pushes from an
untied copy whose loader expects `lm_head.weight` like any other weight. LoRA policies are refused: `vllm_lora`.

Options read from `engine.options` (all optional):

- `nccl_library`: path of libnccl.so.2 (else VLLM_NCCL_SO_PATH, else the `nvidia.nccl` wheel, else the loader path).
  Use the same NCCL version as the server: ranks on different NCCL versions may fail to connect or hang.
- `nccl_packed` (true): vLLM's packed transfer; false sends one broadcast per tensor.
- `nccl_buffer_bytes` (1 GiB, vLLM's default): the packed chunk size. The server allocates up to
  `nccl_num_buffers` (2) receive buffers of about this size during a push.
- `nccl_send_tied_head` (true): send `lm_head.weight` for a tied policy (false only for a server known to
  be started from a tied checkpoint, which vLLM 0.32 then serves with a stale head).
- `nccl_timeout_s` (600): how long the HTTP calls of a push may take.

NCCL finds the trainer through the address it writes into the unique id (its bootstrap socket on this host, an
ephemeral port): the server's workers must reach this host; set NCCL_SOCKET_IFNAME when the default interface
is the wrong one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ajet.trainer.weight_sync.base import WeightSync, WeightSyncError, describe_metrics

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

NCCL_UNIQUE_ID_BYTES = 128
DEFAULT_BUFFER_BYTES = 1024**3  # vLLM's DEFAULT_PACKED_BUFFER_SIZE_BYTES
DEFAULT_NUM_BUFFERS = 2  # vLLM's DEFAULT_PACKED_NUM_BUFFERS
SETUP_HINT = (
    'start the server with VLLM_SERVER_DEV_MODE=1 and --weight-transfer-config \'{"backend": "nccl"}\' '
    "(ajet's engine.launch: add both to launch.args / launch.env)"
)

# ncclDataType_t and ncclRedOp_t values (nccl.h); vLLM's pynccl_wrapper uses the same table.
_NCCL_SUM = 0
_NCCL_DTYPES = {
    "int8": 0,
    "uint8": 1,
    "int32": 2,
    "int64": 4,
    "float16": 6,
    "float32": 7,
    "float64": 8,
    "bfloat16": 9,
}


class _UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_byte * NCCL_UNIQUE_ID_BYTES)]


def find_nccl_library(configured: str | None = None) -> str:
    """The libnccl to load: `configured`, VLLM_NCCL_SO_PATH (what the server honours too), the `nvidia.nccl`
    wheel that CUDA builds of torch depend on, else the soname for the dynamic loader."""
    if configured:
        return configured
    if os.environ.get("VLLM_NCCL_SO_PATH"):
        return os.environ["VLLM_NCCL_SO_PATH"]
    with contextlib.suppress(ImportError):
        import nvidia.nccl  # type: ignore[import-not-found]

        for root in getattr(nvidia.nccl, "__path__", []):
            candidate = os.path.join(root, "lib", "libnccl.so.2")
            if os.path.exists(candidate):
                return candidate
    return "libnccl.so.2"


class NcclLibrary:
    """The NCCL calls a weight-transfer sender needs, through ctypes (no vLLM, no torch.distributed)."""

    def __init__(self, path: str) -> None:
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as exc:
            raise WeightSyncError(
                f"vllm_nccl: cannot load the NCCL library {path!r} ({exc}). It comes with CUDA builds of torch "
                "(pip install nvidia-nccl-cu12, the same NCCL version as the server's); or set "
                "engine.options.nccl_library / VLLM_NCCL_SO_PATH to its path, or use engine.weight_sync: "
                "vllm_reload"
            ) from None
        self.path = path
        p, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        self._declare("ncclGetErrorString", ctypes.c_char_p, [i])
        self._declare("ncclGetVersion", i, [ctypes.POINTER(i)])
        self._declare("ncclGetUniqueId", i, [ctypes.POINTER(_UniqueId)])
        self._declare("ncclCommInitRank", i, [ctypes.POINTER(p), i, _UniqueId, i])
        self._declare("ncclAllReduce", i, [p, p, sz, i, i, p, p])
        self._declare("ncclBroadcast", i, [p, p, sz, i, i, p, p])
        self._declare("ncclCommAbort", i, [p])

    def _declare(self, name: str, restype: Any, argtypes: list[Any]) -> None:
        try:
            fn = getattr(self.lib, name)
        except AttributeError:
            raise WeightSyncError(f"vllm_nccl: {self.path} has no {name}; is it an NCCL library?") from None
        fn.restype, fn.argtypes = restype, argtypes

    def _check(self, result: int, call: str) -> None:
        if result != 0:
            text = self.lib.ncclGetErrorString(result).decode(errors="replace")
            raise WeightSyncError(f"vllm_nccl: {call} failed: NCCL error {result}: {text}")

    def version(self) -> int:
        out = ctypes.c_int()
        self._check(self.lib.ncclGetVersion(ctypes.byref(out)), "ncclGetVersion")
        return out.value

    def unique_id(self) -> bytes:
        uid = _UniqueId()
        self._check(self.lib.ncclGetUniqueId(ctypes.byref(uid)), "ncclGetUniqueId")
        return bytes(uid.internal)

    def init_rank(self, world_size: int, unique_id: bytes, rank: int) -> int:
        uid = _UniqueId()
        ctypes.memmove(uid.internal, unique_id, NCCL_UNIQUE_ID_BYTES)
        comm = ctypes.c_void_p()
        self._check(self.lib.ncclCommInitRank(ctypes.byref(comm), world_size, uid, rank), "ncclCommInitRank")
        return int(comm.value or 0)

    def all_reduce_sum(self, tensor: torch.Tensor, comm: int, stream: int) -> None:
        ptr = tensor.data_ptr()
        code = _nccl_dtype(tensor)
        self._check(
            self.lib.ncclAllReduce(ptr, ptr, tensor.numel(), code, _NCCL_SUM, comm, stream), "ncclAllReduce"
        )

    def broadcast_from_root(self, tensor: torch.Tensor, comm: int, stream: int) -> None:
        # the root sends from its buffer and, as NCCL requires, names it as its receive buffer too
        ptr = tensor.data_ptr()
        code = _nccl_dtype(tensor)
        self._check(self.lib.ncclBroadcast(ptr, ptr, tensor.numel(), code, 0, comm, stream), "ncclBroadcast")

    def abort(self, comm: int) -> None:
        self.lib.ncclCommAbort(comm)


def _nccl_dtype(tensor: torch.Tensor) -> int:
    name = dtype_name(tensor.dtype)
    if name not in _NCCL_DTYPES:
        raise WeightSyncError(
            f"vllm_nccl: NCCL cannot send {tensor.dtype} tensors (supported: {list(_NCCL_DTYPES)})"
        )
    return _NCCL_DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> "bfloat16": what the workers turn back into a dtype with `getattr(torch, name)`."""
    return str(dtype).rsplit(".", 1)[-1]


# ---- what is sent ----


@dataclass(frozen=True)
class WireTensor:
    """One tensor as announced to the workers (name, wire dtype, shape) and the parameter it is read from."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    source: torch.Tensor

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * self.dtype.itemsize

    def materialize(self) -> torch.Tensor:
        """The bytes to send: detached, in the wire dtype, contiguous (NCCL reads `numel` from `data_ptr`)."""
        return self.source.detach().to(self.dtype).contiguous()


def is_peft_model(policy: Any) -> bool:
    return hasattr(policy, "peft_config") and hasattr(policy, "get_base_model")


def wire_tensors(
    policy: torch.nn.Module, dtype: torch.dtype, send_tied_head: bool = True
) -> list[WireTensor]:
    """Every weight the server's loader expects, under its Hugging Face name, in `named_parameters` order,
    floating-point ones announced in `dtype`. A tied output head (one parameter under two names, which
    `named_parameters` lists once) is announced again as `lm_head.weight` when `send_tied_head`."""
    if is_peft_model(policy):
        raise WeightSyncError(
            "vllm_nccl sends full weights; this policy is a peft (LoRA) model. Use engine.weight_sync: vllm_lora "
            "for LoRA training (or train.lora.enabled: false for full fine-tuning)"
        )
    out: list[WireTensor] = []
    for name, param in policy.named_parameters():
        wire = dtype if param.is_floating_point() else param.dtype
        out.append(WireTensor(name, wire, tuple(param.shape), param))
    names = {t.name for t in out}
    head = getattr(policy, "get_output_embeddings", lambda: None)()
    embeddings = getattr(policy, "get_input_embeddings", lambda: None)()
    tied = (
        head is not None
        and embeddings is not None
        and getattr(head, "weight", None) is getattr(embeddings, "weight", object())
    )
    if tied and send_tied_head and "lm_head.weight" not in names:
        weight = head.weight
        out.append(WireTensor("lm_head.weight", dtype, tuple(weight.shape), weight))
    return out


def update_info(tensors: list[WireTensor]) -> dict[str, list[Any]]:
    """The `update_info` body of `/update_weights` (vLLM's NCCLWeightTransferUpdateInfo)."""
    return {
        "names": [t.name for t in tensors],
        "dtype_names": [dtype_name(t.dtype) for t in tensors],
        "shapes": [list(t.shape) for t in tensors],
    }


def packed_chunks(sizes: list[int], buffer_bytes: int) -> list[list[int]]:
    """Indices of the tensors in each packed broadcast: a chunk takes tensors in order and closes right after
    the one that brings it past `buffer_bytes`. This is the rule both vLLM sides apply (`pack_tensors` on a
    vLLM trainer, `packed_nccl_broadcast_consumer` on the workers), so every chunk has the length the workers
    post for it."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, size in enumerate(sizes):
        current.append(index)
        total += size
        if total > buffer_bytes:
            chunks.append(current)
            current, total = [], 0
    if current:
        chunks.append(current)
    return chunks


def pack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Tensors as one flat uint8 tensor, their bytes back to back (what the workers split and view back)."""
    import torch

    return torch.cat([t.reshape(-1).view(torch.uint8) for t in tensors])


# ---- running blocking NCCL calls next to the HTTP calls ----


def _in_daemon_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run `fn` on a daemon thread. NCCL calls block until every rank joins; when the server side fails they
    never return, and a daemon thread (unlike asyncio's default executor) does not hang the process at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="ajet-vllm-nccl", daemon=True).start()
    return future


async def _together(http: asyncio.Future[Any], nccl: asyncio.Future[T], what: str) -> T:
    """Wait for an HTTP call and the NCCL side it pairs with. The first to fail ends the wait: a server that
    rejected the call will never join the collective, so waiting for NCCL would hang forever."""
    done, _ = await asyncio.wait({http, nccl}, return_when=asyncio.FIRST_EXCEPTION)
    for task in (http, nccl):
        if task in done and task.exception() is not None:
            if task is nccl:
                http.cancel()
            raise WeightSyncError(f"vllm_nccl: {what} failed: {task.exception()}") from task.exception()
    await http
    return await nccl


class VllmNcclSync(WeightSync):
    name = "vllm_nccl"

    def __init__(self, engine: Any, config: Any) -> None:
        if not hasattr(engine, "updating") or not hasattr(engine, "post"):
            raise WeightSyncError(
                f"engine.weight_sync: vllm_nccl needs engine.kind vllm, not {config.engine.kind!r}"
            )
        if config.train.lora.enabled:
            raise WeightSyncError(
                "engine.weight_sync: vllm_nccl sends full weights; for LoRA training use vllm_lora"
            )
        if not str(config.model.device).startswith("cuda"):
            raise WeightSyncError(
                f"engine.weight_sync: vllm_nccl sends the policy from a CUDA device, and model.device is "
                f"{config.model.device!r}: set model.device: cuda, or use vllm_reload"
            )
        options = config.engine.options
        self.engine = engine
        self.config = config
        self.library_path = find_nccl_library(options.get("nccl_library"))
        self.packed = bool(options.get("nccl_packed", True))
        self.buffer_bytes = int(options.get("nccl_buffer_bytes", DEFAULT_BUFFER_BYTES))
        self.num_buffers = int(options.get("nccl_num_buffers", DEFAULT_NUM_BUFFERS))
        self.send_tied_head = bool(options.get("nccl_send_tied_head", True))
        self.timeout_s = float(options.get("nccl_timeout_s", 600.0))
        if self.buffer_bytes <= 0 or self.num_buffers <= 0:
            raise WeightSyncError("engine.options: nccl_buffer_bytes and nccl_num_buffers must be positive")
        name = config.model.autocast if config.model.autocast != "none" else config.model.dtype
        self.dtype_name: str = name
        self._nccl: NcclLibrary | None = None
        self._comm: int | None = None
        self._device: Any = None
        self._stream: Any = None
        self.world_size = 0

    # ---- setup ----

    def _check_policy(self, policy: torch.nn.Module) -> torch.device:
        import torch

        if is_peft_model(policy):
            wire_tensors(policy, torch.float32)  # raises the LoRA message
        if not torch.cuda.is_available():
            raise WeightSyncError(
                "vllm_nccl needs CUDA in the trainer (torch.cuda.is_available() is False here); use vllm_reload"
            )
        device = next(policy.parameters()).device
        if device.type != "cuda":
            raise WeightSyncError(f"vllm_nccl sends from a CUDA device; the policy is on {device}")
        return device

    async def start(self, policy: torch.nn.Module) -> None:
        if self._comm is not None:
            return
        import torch

        device = self._check_policy(policy)
        nccl = NcclLibrary(self.library_path)
        answer = await self.engine.get("/get_world_size")
        if not isinstance(answer, dict) or "world_size" not in answer:
            raise WeightSyncError(
                f"vllm_nccl: the server's /get_world_size answered {answer!r}; {SETUP_HINT}"
            )
        workers = int(answer["world_size"])
        world_size = 1 + workers
        unique_id = nccl.unique_id()
        stream = torch.cuda.Stream(device=device)
        init_info = {
            "nccl_unique_id_b64": base64.b64encode(unique_id).decode("ascii"),
            "rank_offset": 1,  # the trainer is rank 0; the workers number themselves from 1
            "world_size": world_size,
            "packed": self.packed,
            "packed_buffer_size_bytes": self.buffer_bytes,
            "packed_num_buffers": self.num_buffers,
        }

        def join() -> int:
            torch.cuda.set_device(device)
            comm = nccl.init_rank(world_size, unique_id, 0)
            # every vLLM communicator runs a one-element float32 sum right after init: match it or hang
            with torch.cuda.stream(stream):
                warmup = torch.zeros(1, dtype=torch.float32, device=device)
                nccl.all_reduce_sum(warmup, comm, stream.cuda_stream)
            stream.synchronize()
            return comm

        # The workers block inside /init_weight_transfer_engine until rank 0 joins, and rank 0 blocks in
        # ncclCommInitRank until they do: send the request first, then join, and wait for both.
        http = asyncio.ensure_future(
            self.engine.post(
                "/init_weight_transfer_engine", {"init_info": init_info}, timeout_s=self.timeout_s
            )
        )
        await asyncio.sleep(0)  # let the request go out before the thread starts
        try:
            comm = await _together(
                http, _in_daemon_thread(join), "joining the server's weight-transfer group"
            )
        except WeightSyncError as exc:
            raise WeightSyncError(f"{exc}. {SETUP_HINT}") from exc.__cause__
        self._nccl, self._comm, self._device, self._stream = nccl, comm, device, stream
        self.world_size = world_size
        logger.info(
            "vllm_nccl: joined the server's weight-transfer group (rank 0 of %d, %d server workers, NCCL %d)",
            world_size,
            workers,
            nccl.version(),
        )

    # ---- pushes ----

    async def push(self, policy: torch.nn.Module, version: int) -> dict[str, float]:
        import torch

        started = time.perf_counter()
        await self.start(policy)  # no-op after the first time
        tensors = wire_tensors(policy, getattr(torch, self.dtype_name), self.send_tied_head)
        nbytes = sum(t.nbytes for t in tensors)
        producer = torch.cuda.current_stream(self._device)  # where the optimizer wrote the parameters
        async with self.engine.updating(version):
            try:
                transfer_s = await self._update(tensors, producer, version)
                served = await self.engine.get("/weight_info")
            except WeightSyncError:
                raise
            except Exception as exc:  # the server refused a step: it says why
                raise WeightSyncError(f"vllm_nccl: pushing version {version} failed: {exc}") from exc
            if not isinstance(served, dict) or served.get("weight_version") != str(version):
                raise WeightSyncError(
                    f"vllm_nccl: after pushing version {version} the server reports weight_version {served!r}"
                )
        return describe_metrics(
            started, time.perf_counter(), nbytes, transfer_s=transfer_s, tensors=len(tensors)
        )

    async def _update(self, tensors: list[WireTensor], producer: Any, version: int) -> float:
        """pause, start, update (with the broadcast), finish, resume; returns the seconds of the transfer."""
        post, timeout = self.engine.post, self.timeout_s
        await post("/pause?mode=wait&clear_cache=true", {}, timeout_s=timeout)
        try:
            await post("/start_weight_update", {}, timeout_s=timeout)
            sent = time.perf_counter()
            http = asyncio.ensure_future(
                post("/update_weights", {"update_info": update_info(tensors)}, timeout_s=timeout)
            )
            await asyncio.sleep(0)  # the request first: a rejected one fails before any broadcast
            try:
                await _together(
                    http, _in_daemon_thread(lambda: self._broadcast(tensors, producer)), "the transfer"
                )
            except WeightSyncError as exc:
                self._abandon()
                raise WeightSyncError(
                    f"{exc}. The server's model may be half updated: restart the server (and the run, which "
                    "resumes from its last checkpoint)"
                ) from exc.__cause__
            transfer_s = time.perf_counter() - sent
            await post("/finish_weight_update", {"weight_version": str(version)}, timeout_s=timeout)
        except BaseException:
            # serve again (the old weights, if the update never started), without hiding the first error
            with contextlib.suppress(Exception):
                await post("/resume", {}, timeout_s=timeout)
            raise
        await post("/resume", {}, timeout_s=timeout)
        return transfer_s

    def _broadcast(self, tensors: list[WireTensor], producer: Any) -> None:
        """Rank 0's side of one update, on its own stream and thread: the announced tensors, in order."""
        import torch

        nccl, comm, stream = self._nccl, self._comm, self._stream
        assert nccl is not None and comm is not None and stream is not None
        torch.cuda.set_device(self._device)
        # the parameters were last written on the trainer's streams; read them only after that work is done
        stream.wait_stream(producer)
        with torch.no_grad(), torch.cuda.stream(stream):
            for batch in self._batches(tensors):
                nccl.broadcast_from_root(batch, comm, stream.cuda_stream)
                # one chunk in flight at a time: its memory is freed before the next one is made
                stream.synchronize()

    def _batches(self, tensors: list[WireTensor]) -> Iterator[torch.Tensor]:
        if not self.packed:
            for t in tensors:
                yield t.materialize()
            return
        for chunk in packed_chunks([t.nbytes for t in tensors], self.buffer_bytes):
            yield pack([tensors[i].materialize() for i in chunk])

    def _abandon(self) -> None:
        """After a failed transfer the group is unusable (a rank may still wait in a broadcast): abort it; the
        next start joins afresh (the server needs a restart anyway)."""
        if self._nccl is not None and self._comm is not None:
            nccl, comm = self._nccl, self._comm
            threading.Thread(target=nccl.abort, args=(comm,), daemon=True).start()
        self._comm = None

    async def aclose(self) -> None:
        if self._comm is None:
            return
        try:
            await self.engine.post("/shutdown_weight_transfer_engine", {}, timeout_s=60.0)
        except Exception as exc:  # a server that is gone has nothing to release
            logger.warning("vllm_nccl: the server did not release the weight-transfer group: %s", exc)
        assert self._nccl is not None
        # ncclCommAbort can wait for work the peer never finishes; vLLM bounds its own the same way
        thread = threading.Thread(target=self._nccl.abort, args=(self._comm,), daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, 5.0)
        self._comm = None
