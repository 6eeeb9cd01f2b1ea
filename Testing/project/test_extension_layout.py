"""Layout checks for the 3D Slicer extension (no Slicer needed).

A Python file (or model file) that the module CMakeLists.txt does not list works
from a source checkout but is missing from the packaged extension. These tests
keep the explicit lists honest. To print the up-to-date blocks for
MRSynth/CMakeLists.txt:

    python Testing/project/test_extension_layout.py --print-scripts
    python Testing/project/test_extension_layout.py --print-models
"""

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # script mode: Testing/, for support
from support.paths import REPO  # noqa: E402

REPO_ROOT = REPO
MODULE_DIR = REPO_ROOT / "MRSynth"
LIB_DIR = REPO_ROOT / "MRSynthLib"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
TOP_CMAKE = REPO_ROOT / "CMakeLists.txt"
MODELS_DIR = REPO_ROOT / "Resources" / "Models"
MODULE_NAME = "MRSynth"

# Folders inside MRSynth/ whose Python files are not module scripts.
TEST_DIR_NAMES = {"Testing", "Tests", "tests", "test"}

# Packages that `import MRSynthLib` must not load (DESIGN: the library is
# usable without Slicer, and importing it is cheap).
FORBIDDEN_ON_IMPORT = (
    "slicer", "qt", "ctk", "vtk", "vtkmodules", "torch", "SimpleITK", "monai", "onnxruntime",
)
# Packages the library must never import, not even inside functions.
FORBIDDEN_IN_LIBRARY = ("slicer", "qt", "ctk", "vtk", "vtkmodules")

MODULE_CLASSES = {
    "MRSynth": "ScriptedLoadableModule",
    "MRSynthWidget": "ScriptedLoadableModuleWidget",
    "MRSynthLogic": "ScriptedLoadableModuleLogic",
    "MRSynthTest": "ScriptedLoadableModuleTest",
}


# --------------------------------------------------------------------------- helpers


def _python_files(root, skip_dirs=()):
    """Paths (relative to root, posix style) of all .py files below root."""
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        parts = rel.parts[:-1]
        if any(p == "__pycache__" or p.startswith(".") or p in skip_dirs for p in parts):
            continue
        found.append(rel)
    return found


def _sort_key(rel):
    # Package by package, each package's __init__.py first.
    return (rel.parts[:-1], rel.name != "__init__.py", rel.name)


def expected_scripts():
    """The SCRIPTS entries MRSynth/CMakeLists.txt must list (the module's own files), in a stable order."""
    module = sorted(_python_files(MODULE_DIR, TEST_DIR_NAMES), key=_sort_key)
    main = Path(f"{MODULE_NAME}.py")
    entries = [main.as_posix()] if main in module else []
    entries += [rel.as_posix() for rel in module if rel != main]
    return entries


def library_scripts():
    """Every library file the CMakeLists globs, relative to the repository root (``MRSynthLib/...``)."""
    return sorted(f"MRSynthLib/{rel.as_posix()}" for rel in _python_files(LIB_DIR))


def format_scripts_block():
    """The `set(MODULE_PYTHON_SCRIPTS ...)` block for MRSynth/CMakeLists.txt."""
    lines = ["set(MODULE_PYTHON_SCRIPTS"]
    for entry in expected_scripts():
        if entry == f"{MODULE_NAME}.py":
            entry = "${MODULE_NAME}.py"
        lines.append(f"  {entry}")
    lines.append("  )")
    return "\n".join(lines)


def expected_model_files():
    """Every file a built-in bundle needs at run time: its card and the weight files the card pins."""
    entries = []
    for card_path in sorted(MODELS_DIR.glob("*/bundle.json")):
        folder = card_path.parent
        weights = json.loads(card_path.read_text())["weights"]
        entries += [f"../Resources/Models/{folder.name}/{name}" for name in ["bundle.json", *sorted(weights)]]
    return entries


def format_models_block():
    """The `set(MODULE_MODEL_FILES ...)` block for MRSynth/CMakeLists.txt."""
    return "\n".join(["set(MODULE_MODEL_FILES", *[f"  {entry}" for entry in expected_model_files()], "  )"])


def _strip_cmake_comments(text):
    """Drop `# ...` comments (outside double-quoted strings)."""
    out = []
    for line in text.splitlines():
        in_quotes = False
        for i, char in enumerate(line):
            if char == '"' and (i == 0 or line[i - 1] != "\\"):
                in_quotes = not in_quotes
            elif char == "#" and not in_quotes:
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def _cmake_set_values(text, name):
    """Values of `set(<name> v1 v2 ...)`, with ${MODULE_NAME} expanded."""
    text = _strip_cmake_comments(text)
    match = re.search(rf"\bset\(\s*{re.escape(name)}\s(.*?)\)", text, re.S | re.I)
    assert match, f"no set({name} ...) in the CMakeLists.txt"
    values = re.findall(r'"([^"]*)"|(\S+)', match.group(1))
    return [(quoted or bare).replace("${MODULE_NAME}", MODULE_NAME) for quoted, bare in values]


# --------------------------------------------------------------------------- tests


def test_module_scripts_list_every_python_file():
    listed = _cmake_set_values(MODULE_CMAKE.read_text(), "MODULE_PYTHON_SCRIPTS")
    expected = expected_scripts()
    duplicates = sorted({entry for entry in listed if listed.count(entry) > 1})
    missing = sorted(set(expected) - set(listed))
    extra = sorted(set(listed) - set(expected))
    hint = "regenerate with: python Testing/project/test_extension_layout.py --print-scripts"
    assert not duplicates, f"listed twice in MODULE_PYTHON_SCRIPTS: {duplicates}"
    assert not missing, f"missing from MODULE_PYTHON_SCRIPTS (would not ship): {missing}; {hint}"
    assert not extra, f"MODULE_PYTHON_SCRIPTS lists files that do not exist: {extra}; {hint}"


def test_module_resources_exist():
    resources = _cmake_set_values(MODULE_CMAKE.read_text(), "MODULE_PYTHON_RESOURCES")
    assert f"Resources/Icons/{MODULE_NAME}.png" in resources
    assert f"Resources/UI/{MODULE_NAME}.ui" in resources
    missing = [entry for entry in resources if not (MODULE_DIR / entry).is_file()]
    assert not missing, f"MODULE_PYTHON_RESOURCES lists files that do not exist: {missing}"


def test_built_in_model_files_are_listed():
    """The built-in bundles ship with the extension (MRSynthLib.models.registry finds them next to the library)."""
    listed = _cmake_set_values(MODULE_CMAKE.read_text(), "MODULE_MODEL_FILES")
    expected = expected_model_files()
    assert expected, "no built-in bundle in Resources/Models"
    hint = "regenerate with: python Testing/project/test_extension_layout.py --print-models"
    assert sorted(set(expected) - set(listed)) == [], f"model files missing from MODULE_MODEL_FILES; {hint}"
    extra = [entry for entry in listed if entry not in expected or not (MODULE_DIR / entry).is_file()]
    assert not extra, f"MODULE_MODEL_FILES lists files that are not needed or do not exist: {extra}; {hint}"


def test_top_level_cmake_metadata():
    text = TOP_CMAKE.read_text()
    assert _cmake_set_values(text, "EXTENSION_CATEGORY") == ["Image Synthesis"]
    assert re.search(r"add_subdirectory\(\s*MRSynth\s*\)", text)
    # The icon the ICONURL points to is in the repository.
    (icon_url,) = _cmake_set_values(text, "EXTENSION_ICONURL")
    icon_path = icon_url.split("/main/", 1)[1]
    assert (REPO_ROOT / icon_path).is_file(), f"ICONURL target {icon_path} is missing"


def test_module_file_defines_the_four_classes():
    tree = ast.parse((MODULE_DIR / f"{MODULE_NAME}.py").read_text(), filename=f"{MODULE_NAME}.py")
    bases = {
        node.name: [ast.unparse(base) for base in node.bases]
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    for name, base in MODULE_CLASSES.items():
        assert name in bases, f"{MODULE_NAME}.py must define class {name}"
        assert base in bases[name], f"{name} must derive from {base}, not {bases[name]}"


def test_import_mrsynthlib_loads_no_heavy_or_slicer_packages():
    code = (
        "import json, sys\n"
        "import MRSynthLib\n"
        f"forbidden = {FORBIDDEN_ON_IMPORT!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in forbidden)\n"
        "print(json.dumps({'file': MRSynthLib.__file__, 'loaded': loaded}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(LIB_DIR), report["file"]
    assert report["loaded"] == [], f"`import MRSynthLib` loaded {report['loaded']}"


def test_library_never_imports_slicer_qt_ctk_vtk():
    offenders = []
    for rel in _python_files(LIB_DIR):
        tree = ast.parse((LIB_DIR / rel).read_text(), filename=str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"MRSynthLib/{rel.as_posix()}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN_IN_LIBRARY
            ]
    assert not offenders, "; ".join(offenders)


def _installed_layout(root):
    """Copy the listed files to ``root`` the way the extension build places them in qt-scripted-modules."""
    text = MODULE_CMAKE.read_text()
    for name in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES", "MODULE_MODEL_FILES"):
        for entry in _cmake_set_values(text, name):
            source = MODULE_DIR / entry
            target = root / entry.removeprefix("../")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    for entry in library_scripts():
        target = root / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / entry, target)
    return root


def test_installed_extension_imports_its_own_library_and_finds_the_built_in_models(tmp_path):
    installed = _installed_layout(tmp_path / "qt-scripted-modules")
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(installed)!r})\n"
        "import MRSynthLib, MRSynthSlicerLib\n"
        "from MRSynthSlicerLib.models import installed_models\n"
        "print(json.dumps({'lib': MRSynthLib.__file__, 'glue': MRSynthSlicerLib.__file__,\n"
        "                  'models': [[m.name, str(m.path), m.error] for m in installed_models()]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["lib"]).is_relative_to(installed) and Path(report["glue"]).is_relative_to(installed)
    built_in = [m for m in report["models"] if Path(m[1]).is_relative_to(installed)]
    assert sorted(m[0] for m in built_in) == sorted(p.parent.name for p in MODELS_DIR.glob("*/bundle.json"))
    assert built_in[0][0] == "mrsynth-regression"  # the default is listed first
    assert all(m[2] is None for m in built_in)
    batch = subprocess.run([sys.executable, str(installed / "Scripts" / "batch.py"), "--", "--target", "t1ce"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert batch.returncode == 2 and "--input-dir" in batch.stderr


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_module_cmakelists_configures_and_places_the_models(tmp_path):
    """Configure MRSynth/CMakeLists.txt with stand-ins for the Slicer macros (no Slicer build needed)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(f"""
cmake_minimum_required(VERSION 3.16)
project(check NONE)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/qt-scripted-modules)
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${{ARGN}})
  file(WRITE ${{CMAKE_BINARY_DIR}}/module_scripts.txt "${{MY_SCRIPTS}}")
endfunction()
function(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS" ${{ARGN}})
  file(WRITE ${{CMAKE_BINARY_DIR}}/lib_scripts.txt "${{MY_SCRIPTS}}")
endfunction()
function(slicer_add_python_unittest)
endfunction()
add_subdirectory({MODULE_DIR.as_posix()} MRSynth)
""")
    build = tmp_path / "build"
    result = subprocess.run(["cmake", "-S", str(project), "-B", str(build)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    module_scripts = (build / "module_scripts.txt").read_text().split(";")
    lib_scripts = (build / "lib_scripts.txt").read_text().split(";")
    assert "MRSynth.py" in module_scripts and "Scripts/batch.py" in module_scripts
    assert lib_scripts == library_scripts()  # the glob ships every library module, nothing else
    copied = sorted(p.relative_to(build / "lib" / "qt-scripted-modules").as_posix()
                    for p in (build / "lib" / "qt-scripted-modules").rglob("*") if p.is_file())
    assert copied == sorted(entry.removeprefix("../") for entry in expected_model_files())


# --------------------------------------------------------------------------- CLI


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--print-scripts",
        action="store_true",
        help="print the set(MODULE_PYTHON_SCRIPTS ...) block for MRSynth/CMakeLists.txt",
    )
    parser.add_argument(
        "--print-models",
        action="store_true",
        help="print the set(MODULE_MODEL_FILES ...) block for MRSynth/CMakeLists.txt",
    )
    args = parser.parse_args(argv)
    if not (args.print_scripts or args.print_models):
        parser.print_help()
        return 1
    if args.print_scripts:
        print(format_scripts_block())
    if args.print_models:
        print(format_models_block())
    return 0


if __name__ == "__main__":
    sys.exit(main())
