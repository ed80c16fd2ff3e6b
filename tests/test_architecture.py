"""The structure README "Layout" draws, checked on the code: who may import whom, one writer of
files, one base class of user errors, no import circle."""

import ast
import importlib
import inspect
import pathlib

import pytest

from official.errors import UserError

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "official"
MODULES = sorted(
    ".".join(("official", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
        ".__init__"
    )
    for path in PACKAGE.rglob("*.py")
)


def _path(module: str) -> pathlib.Path:
    relative = pathlib.Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else (PACKAGE / relative).with_suffix(".py")


def _imports(module: str) -> set[str]:
    """The package's modules that `module` imports, at any depth (function-level too).

    `from package import submodule` imports the submodule; `from module import name`, the
    module.
    """
    found = set()
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name for name in submodules if name in MODULES]
            if len(names) < len(submodules):
                names.append(node.module)
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


GRAPH = {module: _imports(module) for module in MODULES}
# Command-line entry points: `python -m <module>`.
ENTRY_POINTS = {m for m in MODULES if "app.run(" in _path(m).read_text()}
# Scripts another Python runs by path (models/torch_reference_script.py, benchmark_script.py,
# with torch): never imported by the package, and not importable in its environment.
OTHER_INTERPRETER = {m for m in MODULES if "\nimport torch" in _path(m).read_text()}


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_circle():
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import circle: " + " -> ".join(trail + [module])
        state[module] = "open"
        for imported in sorted(GRAPH[module]):
            visit(imported, trail + [module])
        state[module] = "done"

    for module in MODULES:
        visit(module, [])


@pytest.mark.parametrize(
    "importer, forbidden",
    [
        # Evaluation and serving start from a run (official/runs.py), never from training.
        (("official.evaluation", "official.serving"), ("official.training", "official.train_lib")),
        # The lower floors know nothing of the floors above them, nor of each other.
        (
            ("official.models",),
            ("official.data", "official.training", "official.evaluation", "official.serving"),
        ),
        (
            ("official.data",),
            ("official.models", "official.training", "official.evaluation", "official.serving"),
        ),
        # Only entry points and the wiring read a Config or talk to the user; the run
        # directory's format (runs.py) is below the wiring, above models/ and data/.
        (
            ("official.models", "official.data", "official.training", "official.evaluation"),
            ("official.config", "official.cli") + tuple(m for m in MODULES if m.endswith("_lib")),
        ),
        (("official.models", "official.data"), ("official.runs",)),
    ],
)
def test_layers(importer, forbidden):
    wrong = {
        (module, imported)
        for module in MODULES
        if _within(module, *importer) and module not in ENTRY_POINTS
        for imported in GRAPH[module]
        if _within(imported, *forbidden)
    }
    assert not wrong


def test_the_registry_imports_no_family():
    assert not {m for m in GRAPH["official.models.registry"] if m.startswith("official.models")}
    families = {"efficientnet", "inception", "mobilenet", "resnet", "vgg"}
    assert {f"official.models.{f}" for f in families} <= GRAPH["official.models"]


def test_one_module_renames_files_into_place():
    """Every writer goes through official/atomic.py (write to a temporary name, rename)."""
    renaming = set()
    for module in MODULES:
        for node in ast.walk(ast.parse(_path(module).read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("replace", "rename")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                renaming.add(module)
    assert renaming == {"official.atomic"}


# Errors the package raises and catches itself (never shown to a user as such).
INTERNAL_ERRORS = {"official.data.shards.ImageError", "official.runs.UnreadableCheckpointError"}


def test_every_error_a_user_can_cause_is_a_user_error():
    assert {
        "official.models.torch_reference_script", "official.benchmark_script"
    } == OTHER_INTERPRETER  # fmt: skip
    defined = set()
    for module_name in MODULES:
        if module_name in ENTRY_POINTS | OTHER_INTERPRETER:
            continue  # Entry points define flags (once per process) and no errors.
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module_name
            ):
                defined.add((f"{module_name}.{name}", value))
    assert len(defined) >= 10
    for name, error in defined:
        assert issubclass(error, UserError) or name in INTERNAL_ERRORS, name
