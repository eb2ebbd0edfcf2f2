"""The library's imports flow one way.

Read from the source with :mod:`ast` (and every module imported once), the graph of
``diffaug_genomics`` modules has these properties:

- **no cycle**, counting every import that runs: at module level *and* inside functions (a
  function-level import that breaks a circle is still a circle), **and** counting the imports
  under ``if TYPE_CHECKING:`` too (a type that names a module above is a dependency on it for a
  reader). ``from package import submodule`` is an edge to the submodule, and an edge from a
  module to a package containing it is dropped (Python initialises the package first whatever
  the module says);
- **layers** (:data:`LAYERS`, lowest first): no import, TYPE_CHECKING ones included, goes from
  a module to one of a higher layer, and every module is in one;
- **the library never imports the command line** (``diffaug_genomics_cli``, ``cli``);
- **``diffaug_genomics/io/`` imports nothing above it**: besides ``diffaug_genomics.io.*`` only
  the leaf modules in :data:`IO_MAY_IMPORT` (errors, the DNA alphabet, the version,
  ``guards`` for :func:`require_finite`, and ``run_files``, the run directory's file names),
  each of which imports no other
  ``diffaug_genomics`` module but ``errors``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "diffaug_genomics"
PACKAGE = "diffaug_genomics"
IO_MAY_IMPORT = {"diffaug_genomics.errors", "diffaug_genomics.alphabet",
                 "diffaug_genomics._version", "diffaug_genomics.guards",
                 "diffaug_genomics.run_files"}
CLI_NAMES = ("diffaug_genomics_cli", "cli")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The library module that importing ``name`` (a module or a name in one) runs."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(path: Path, type_checking: bool = False) -> set[str]:
    """Absolute names imported by a module, at any depth; under ``if TYPE_CHECKING:`` only
    with ``type_checking``."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not type_checking:
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                names.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for a in child.names:  # a submodule, or a name in child.module
                    full = f"{child.module}.{a.name}"
                    names.add(full if full in MODULES else child.module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def graph(type_checking: bool = False) -> dict[str, set[str]]:
    edges = {}
    for mod, path in MODULES.items():
        targets = {_resolve(n) for n in imported_names(path, type_checking)
                   if n.startswith(PACKAGE)}
        edges[mod] = {t for t in targets if t and t != mod and not mod.startswith(t + ".")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := dfs(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := dfs(node)) is not None:
            return found
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_counting_type_checking_imports():
    cycle = find_cycle(graph(type_checking=True))
    assert cycle is None, "import cycle (TYPE_CHECKING imports included): " + " -> ".join(cycle)


LAYERS = [
    ("base", ["errors", "_version", "", "alphabet", "alphabet_maps", "guards", "metrics",
              "progress", "transfer", "kmers", "run_files", "threads", "slurm"]),
    ("io", ["io"]),
    ("data and configuration", ["config_schema", "config_keys", "config", "config_help",
                                "output_formats", "record_changes", "encode", "synthetic",
                                "dataset_parsers", "datasets", "data", "evaluate", "symmetry",
                                "diagnostics"]),
    ("models", ["models", "diffusion", "losses", "positives"]),
    ("modalities", ["modalities", "shards"]),
    ("training", ["train", "lock_holder", "run_lock", "fit_lock", "run_cleanup"]),
    ("commands", ["fit", "runs", "embed", "embeddings_out", "generate", "merge", "input_kinds",
                  "inspect", "evaluate_inputs", "evaluate_files", "report"]),
]
"""The library's layers, lowest first, each a list of modules or packages (relative to
``diffaug_genomics``; ``""`` is the package itself). A module imports only from its own layer
and the layers below."""


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of a library module (its longest matching entry)."""
    rel = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best: tuple[int, int] | None = None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if rel == name or (name and rel.startswith(name + ".")):
                if best is None or len(name) > best[1]:
                    best = (i, len(name))
    return None if best is None else best[0]


def test_every_module_is_in_a_layer():
    unplaced = [m for m in MODULES if layer_of(m) is None]
    assert not unplaced, f"add these modules to a layer of LAYERS: {unplaced}"


def test_no_arrow_from_a_lower_layer_to_a_higher_one():
    edges = graph(type_checking=True)
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(edges.items()) for b in sorted(targets)
              if layer_of(a) is not None and layer_of(b) is not None
              and layer_of(b) > layer_of(a)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_layer_check_sees_an_upward_arrow():
    assert layer_of(f"{PACKAGE}.io.fasta") < layer_of(f"{PACKAGE}.train.loop")
    assert layer_of(f"{PACKAGE}.run_files") == 0 and layer_of(PACKAGE) == 0
    assert layer_of(f"{PACKAGE}.report.build") == len(LAYERS) - 1


def test_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_library_never_imports_the_command_line():
    for mod, path in MODULES.items():
        bad = {n for n in imported_names(path) if n.split(".")[0] in CLI_NAMES}
        assert not bad, f"{mod} imports {sorted(bad)}"


def test_io_imports_nothing_above_it():
    edges = graph()
    for mod in (m for m in MODULES if m.startswith(f"{PACKAGE}.io")):
        above = {t for t in edges[mod] if not t.startswith(f"{PACKAGE}.io")} - IO_MAY_IMPORT
        assert not above, f"{mod} imports {sorted(above)}"
    for leaf in IO_MAY_IMPORT:  # the allowed ones are leaves themselves
        assert edges[leaf] <= {f"{PACKAGE}.errors"}, f"{leaf} imports {sorted(edges[leaf])}"
