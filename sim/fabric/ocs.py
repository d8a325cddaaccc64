"""Optical-circuit-switched TPU pods (TPU v4 style, Jouppi et al., ISCA 2023).

A pod is built from cubes of 4x4x4 chips. Inside a cube, chips are joined by electrical
ICI links as a 3D mesh. Every chip on a cube face has one optical ICI link to an optical
circuit switch (OCS): for each dimension d and each of the 16 positions on a face there is
one OCS, to which the +d and the -d face chip at that position of every cube connect (so
48 OCS units of 128 used ports serve 64 cubes). A *slice* request, such as 4x8x16, takes
whole cubes and sets circuits so that the cubes form a torus of that shape: the +d face of
each cube is joined to the -d face of its neighbour along d, wrapping around (a slice one
cube wide along d wraps onto itself). Twisted slices (k x k x 2k) shift the wrap-around
circuits of the short dimensions by half the long one.

Main assumption: an OCS is a passive crossbar of light (rate-agnostic, negligible latency);
changing circuits takes the OCS's reconfiguration time, during which the affected slice
carries no traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..catalog import Catalog, load_catalog
from ..errors import InfeasibleError, TopologyError
from .builders import FabricBuilder, torus_links
from .fabric import Fabric, TorusDomain

__all__ = ["ocs_pod", "OCSPod", "Slice"]


@dataclass
class Slice:
    """A torus of whole cubes, realised by circuits."""

    name: str
    shape: tuple[int, int, int]
    cubes: list[int]
    domain: int
    twisted: bool


class OCSPod:
    """Circuit state of an OCS pod: which cubes are free, which slices exist.

    Parameters
    ----------
    fabric : Fabric
    cube_dims : tuple of int
        Chips per cube along each dimension (4, 4, 4).
    cubes : list of list of str
        Chip names of every cube, row-major within the cube.
    ocs_units : dict
        (dim, position) -> OCS node name.
    reconfigure_time_s : float
        Time to set new circuits (s).
    """

    def __init__(self, fabric: Fabric, cube_dims: tuple[int, ...], cubes: list[list[str]],
                 ocs_units: dict, reconfigure_time_s: float):
        self.fabric = fabric
        self.cube_dims = tuple(cube_dims)
        self.cubes = cubes
        self.ocs_units = ocs_units
        self.reconfigure_time_s = reconfigure_time_s
        self.free = list(range(len(cubes)))
        self.slices: dict[str, Slice] = {}
        self.circuits: dict[tuple, tuple] = {}  # (ocs, chip) -> (ocs, chip)

    def _local(self, c: tuple) -> int:
        i = 0
        for x, n in zip(c, self.cube_dims, strict=True):
            i = i * n + x
        return i

    def allocate(self, shape, *, name: str | None = None, twisted: bool = False) -> Slice:
        """Take free cubes and set circuits so they form a torus of ``shape``.

        Raises
        ------
        InfeasibleError
            If the shape is not a whole number of cubes per dimension, or not enough cubes
            are free.
        """
        shape = tuple(int(x) for x in shape)
        cd = self.cube_dims
        if len(shape) != len(cd) or any(s % c or s <= 0 for s, c in zip(shape, cd, strict=True)):
            raise InfeasibleError(f"slice {'x'.join(map(str, shape))} is not a whole number of "
                                  f"{'x'.join(map(str, cd))} cubes per dimension")
        grid_c = tuple(s // c for s, c in zip(shape, cd, strict=True))
        need = math.prod(grid_c)
        if need > len(self.free):
            raise InfeasibleError(f"slice {'x'.join(map(str, shape))} needs {need} cubes, only "
                                  f"{len(self.free)} of {len(self.cubes)} are free")
        if twisted:
            long = max(shape)
            if shape.count(long) != 1 or any(long != 2 * d for d in shape if d != long):
                raise InfeasibleError(f"a twisted slice needs shape k x k x 2k, got {list(shape)}")
        name = name or f"slice{len(self.slices)}"
        if name in self.slices:
            raise InfeasibleError(f"slice {name!r} exists already")
        cubes, self.free = self.free[:need], self.free[need:]
        t = TorusDomain(dims=shape, twisted=twisted)
        members = []
        for gc in _row_major(shape):
            cube_pos = tuple(x // c for x, c in zip(gc, cd, strict=True))
            local = tuple(x % c for x, c in zip(gc, cd, strict=True))
            ci = cubes[_index(cube_pos, grid_c)]
            chip = self.cubes[ci][self._local(local)]
            t.grid[gc] = chip
            t.coords[chip] = gc
            members.append(chip)
        # circuits: every chip on a +d cube face to its torus neighbour on the next cube
        for gc, chip in t.grid.items():
            for d, c in enumerate(cd):
                if gc[d] % c != c - 1:
                    continue
                nb = t.neighbor(gc, d, 1)
                other = t.grid[nb]
                pos = _face_pos(tuple(x % k for x, k in zip(gc, cd, strict=True)), d, cd)
                ocs = self.ocs_units[(d, pos)]
                self.circuits[(ocs, chip)] = (ocs, other)
                self.circuits[(ocs, other)] = (ocs, chip)
                t.hops[(chip, other)] = [chip, ocs, other]
                t.hops[(other, chip)] = [other, ocs, chip]
        dom = self.fabric.add_domain(members, torus=t, new=False)
        s = Slice(name, shape, cubes, dom, twisted)
        self.slices[name] = s
        self.fabric.invalidate()
        return s

    def release(self, name: str) -> None:
        """Tear down a slice's circuits and return its cubes to the free pool."""
        s = self.slices.pop(name)
        t = self.fabric.torus.pop(s.domain)
        for (u, _v), hop in t.hops.items():
            self.circuits.pop((hop[1], u), None)
        for chip in t.coords:
            if self.fabric.domain_of.get(chip) == s.domain:
                del self.fabric.domain_of[chip]
        self.free = sorted(self.free + s.cubes)
        self.fabric.invalidate()

    def reconfigure(self, env, shape, **kw):
        """SimPy process: wait the OCS reconfiguration time, then allocate the slice.

        Use as ``slice_ = yield env.process(pod.reconfigure(env, (4, 8, 16)))``.
        """
        yield env.timeout(self.reconfigure_time_s)
        return self.allocate(shape, **kw)


def _row_major(dims):
    from itertools import product

    return product(*(range(d) for d in dims))


def _index(c: tuple, dims: tuple) -> int:
    i = 0
    for x, n in zip(c, dims, strict=True):
        i = i * n + x
    return i


def _face_pos(local: tuple, d: int, cd: tuple) -> int:
    """Position of a face chip on the face normal to ``d`` (row-major over the others)."""
    others = [(x, n) for i, (x, n) in enumerate(zip(local, cd, strict=True)) if i != d]
    i = 0
    for x, n in others:
        i = i * n + x
    return i


def ocs_pod(*, cubes: int = 64, node: str = "TPUv4-cube", ocs: str = "Palomar-OCS",
            slices: list | None = None, reconfigure_time_s: float | None = None,
            catalog: Catalog | None = None, name: str | None = None,
            file: str | None = None) -> Fabric:
    """A TPU v4-style pod of ``cubes`` cubes joined through optical circuit switches.

    Parameters
    ----------
    cubes : int
        Number of 4x4x4 cubes (64 for a 4,096-chip TPU v4 pod).
    node : str
        Catalog node of one cube (a torus-shaped scale-up node).
    ocs : str
        Catalog switch of kind ``ocs``.
    slices : list, optional
        Slices to set up at build time: each a shape ``[x, y, z]`` or a mapping
        ``{shape: [x, y, z], twisted: true, name: ...}``.
    reconfigure_time_s : float, optional
        Circuit reconfiguration time; the OCS catalog entry's if omitted.

    Returns
    -------
    Fabric
        With ``fabric.ocs`` the :class:`OCSPod` that allocates and releases slices.
    """
    cat = catalog or load_catalog()
    nm = cat.get("nodes", node, file=file, field="params.node")
    if nm.scale_up != "torus":
        raise TopologyError(f"{node} is not a torus-shaped node", file=file, field="params.node")
    sw = cat.get("switches", ocs, file=file, field="params.ocs")
    if sw.kind != "ocs":
        raise TopologyError(f"{ocs} is a {sw.kind} switch, not an optical circuit switch",
                            file=file, field="params.ocs")
    if cubes < 1:
        raise TopologyError(f"must be at least 1, got {cubes}", file=file, field="params.cubes")
    acc = cat.accelerators[nm.accelerator]
    link = cat.links[acc.scale_up_link]
    cd = nm.torus_dims
    if cubes * 2 > sw.radix:
        raise TopologyError(f"{cubes} cubes need {2 * cubes} ports per OCS, {sw.id} has "
                            f"{sw.radix}", file=file, field="params.cubes")
    b = FabricBuilder(cat, name or f"{cubes}-cube {acc.id} OCS pod", file)
    units = {}
    for d, _ in enumerate(cd):
        face = math.prod(cd) // cd[d]
        for pos in range(face):
            units[(d, pos)] = b.node(f"ocs{d}.{pos}", "ocs", sw.id, tier=0,
                                     switch_latency=sw.latency_s)
    cube_chips = []
    f = b.fabric
    for c in range(cubes):
        names = [b.node(f"c{c}.g{i}", "accelerator", acc.id) for i in range(math.prod(cd))]
        torus_links(b, names, cd, link, acc.scale_up_links, wrap=False, twisted=False,
                    reach="rack")
        for i, coord in enumerate(_row_major(cd)):
            for d, k in enumerate(cd):
                if coord[d] in (0, k - 1):
                    b.cable(names[i], units[(d, _face_pos(coord, d, cd))], link, reach="hall")
        f.accelerators.extend(names)
        cube_chips.append(names)
    rt = reconfigure_time_s if reconfigure_time_s is not None else (sw.reconfigure_time_s or 0.0)
    f.ocs = OCSPod(f, cd, cube_chips, units, rt)
    f.meta.update({"builder": "ocs_pod", "cubes": cubes, "node": nm.id})
    for i, s in enumerate(slices or []):
        try:
            if isinstance(s, dict):
                f.ocs.allocate(s["shape"], twisted=s.get("twisted", False) is True,
                               name=s.get("name"))
            else:
                f.ocs.allocate(s)
        except InfeasibleError as e:
            raise TopologyError(str(e), file=file, field=f"params.slices[{i}]") from None
    f.routing = "ecmp"
    return f
