"""docs/DESIGN.md matches the code: its module table, its layer tables, its paper citations.

- Module table (section "## Modules"): one row per library module, every non-test `.py` file
  under `ebm_tf/` and `export/` except `__init__.py`, and no row for a file that does not exist;
  each row's purpose is the first line of that module's docstring, which must be a one-line
  summary (a blank line or nothing after it).
- Layer tables (section "## Layers"): the table of which package may import which equals `LAYERS`
  in tools/layers.bzl, row order included; the table of tests' extra imports equals
  `TEST_ONLY_LAYERS`.
- Paper citations: every "docs/paper_settings.md section N" in the sources, presets and docs names
  a section that docs/paper_settings.md has, and nothing cites the old out-of-repository spec.

Fast: files are read and parsed with `ast` and `re`; nothing imports TensorFlow. The paths are
those of the source tree (through `realpath`, as tests/bazel_smoke_test.py does), so under Bazel
the test reads the same files as under pytest.
"""

import ast
import os
import re

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_DESIGN = os.path.join(_ROOT, "docs", "DESIGN.md")
_PAPER_SETTINGS = os.path.join(_ROOT, "docs", "paper_settings.md")
_LAYERS_BZL = os.path.join(_ROOT, "tools", "layers.bzl")
_LIBRARY_ROOTS = ("ebm_tf", "export")
# Where citations of docs/paper_settings.md are looked for.
_CITING_ROOTS = ("ebm_tf", "export", "tests", "bench", "tools", "flags", "docs", "scripts")
_CITING_SUFFIXES = (".py", ".md", ".cfg", ".bzl", ".sh")
_SKIP_DIRS = {"__pycache__", ".venv", "runs", ".git"}
_OLD_SPEC = "paper" + "_spec"  # spelled in two parts so that this file does not cite it


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _section(markdown, heading):
  """The text of the '## <heading>' section of a markdown document, up to the next '## '."""
  match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", markdown, re.M | re.S)
  if match is None:
    raise AssertionError(f"docs/DESIGN.md has no '## {heading}' section")
  return match.group(1)


def _tables(text):
  """Markdown tables in text: a list of (header cells, [row cells]) in order."""
  tables, current = [], None
  for line in text.splitlines():
    line = line.strip()
    if not line.startswith("|"):
      current = None
      continue
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    if current is None:
      current = (cells, [])
      tables.append(current)
    elif not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
      current[1].append(cells)
  return tables


def _table(text, *header):
  """The rows of the one table whose header cells are `header`."""
  found = [rows for cells, rows in _tables(text) if tuple(cells) == header]
  if len(found) != 1:
    raise AssertionError(f"expected one table headed {header}, found {len(found)}")
  return found[0]


def _code(cell):
  """'`ebm_tf/x.py`' -> 'ebm_tf/x.py'; a cell that is not one code span fails."""
  match = re.fullmatch(r"`([^`]+)`", cell)
  if match is None:
    raise AssertionError(f"table cell {cell!r} is not one `code` name")
  return match.group(1)


def _package_list(cell):
  """'`a`, `b`' -> ['a', 'b']; '-' -> []."""
  if cell in ("-", ""):
    return []
  return [_code(part.strip()) for part in cell.split(",")]


def _bzl_dict(name):
  """The dict literal assigned to `name` at the top level of tools/layers.bzl."""
  tree = ast.parse(_read(_LAYERS_BZL), filename=_LAYERS_BZL)
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1 and
        isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
      return ast.literal_eval(node.value)
  raise AssertionError(f"tools/layers.bzl assigns no {name}")


def _library_modules():
  """Repository-relative paths of the library modules (non-test .py files, no __init__.py)."""
  modules = []
  for root in _LIBRARY_ROOTS:
    for dirpath, dirnames, filenames in os.walk(os.path.join(_ROOT, root)):
      dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
      for filename in filenames:
        if (filename.endswith(".py") and filename != "__init__.py" and
            not filename.endswith("_test.py")):
          modules.append(os.path.relpath(os.path.join(dirpath, filename), _ROOT))
  return sorted(path.replace(os.sep, "/") for path in modules)


def _docstring_lines(path):
  docstring = ast.get_docstring(ast.parse(_read(os.path.join(_ROOT, path)), filename=path),
                                clean=False)
  return docstring.splitlines() if docstring else []


class ModuleTableTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rows = _table(_section(_read(_DESIGN), "Modules"), "module", "purpose")
    cls.rows = [(_code(cells[0]), "|".join(cells[1:]).strip()) for cells in rows]

  def test_one_row_per_library_module(self):
    listed = [path for path, _ in self.rows]
    duplicates = sorted({path for path in listed if listed.count(path) > 1})
    self.assertEmpty(duplicates, "modules listed twice in docs/DESIGN.md")
    modules = _library_modules()
    missing = [f"| `{path}` | {(_docstring_lines(path) or ['<its docstring first line>'])[0]} |"
               for path in modules if path not in listed]
    self.assertEmpty(missing, "library modules missing from the module table of docs/DESIGN.md "
                     "(add these rows)")
    self.assertEmpty(sorted(set(listed) - set(modules)),
                     "rows of docs/DESIGN.md's module table that name no library module")

  def test_each_purpose_is_the_first_line_of_the_module_docstring(self):
    for path, purpose in self.rows:
      if not os.path.exists(os.path.join(_ROOT, path)):
        continue  # reported by test_one_row_per_library_module
      with self.subTest(module=path):
        lines = _docstring_lines(path)
        self.assertNotEmpty(lines, f"{path} has no module docstring")
        self.assertEqual(purpose, lines[0].strip(),
                         f"docs/DESIGN.md's purpose of {path} is not its docstring's first line")

  def test_each_module_docstring_starts_with_a_one_line_summary(self):
    for path in _library_modules():
      with self.subTest(module=path):
        lines = _docstring_lines(path)
        self.assertNotEmpty(lines, f"{path} has no module docstring")
        self.assertTrue(lines[0].strip(), f"{path}: the docstring's first line is empty")
        if len(lines) > 1:
          self.assertEqual(lines[1].strip(), "",
                           f"{path}: the docstring's summary runs on past its first line")


class LayerTableTest(absltest.TestCase):

  maxDiff = None

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.layers_section = _section(_read(_DESIGN), "Layers")

  def test_layer_table_equals_layers_bzl(self):
    rows = _table(self.layers_section, "package", "may import (besides itself)")
    documented = [(_code(cells[0]), _package_list(cells[1])) for cells in rows]
    self.assertEqual(documented, list(_bzl_dict("LAYERS").items()))

  def test_test_only_table_equals_layers_bzl(self):
    rows = _table(self.layers_section, "package", "its tests may also import")
    documented = [(_code(cells[0]), _package_list(cells[1])) for cells in rows]
    self.assertEqual(documented, list(_bzl_dict("TEST_ONLY_LAYERS").items()))


def _citing_files():
  yield os.path.join(_ROOT, "README.md")
  for root in _CITING_ROOTS:
    for dirpath, dirnames, filenames in os.walk(os.path.join(_ROOT, root)):
      dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
      for filename in sorted(filenames):
        if filename.endswith(_CITING_SUFFIXES):
          yield os.path.join(dirpath, filename)


# "docs/paper_settings.md section 7.4", "... sections 6.1, 8.3", "... sections 6.1-6.4",
# "paper_settings.md 7.4", "docs/paper_settings.md (section 2, ...".
_CITATION = re.compile(r"paper_settings\.md`?\s*\(?(?:sections?\s+)?"
                       r"(\d+(?:\.\d+)?(?:\s*(?:,|-|and)\s*\d+(?:\.\d+)?)*)")


class PaperCitationTest(absltest.TestCase):

  def test_citations_name_existing_sections(self):
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", _read(_PAPER_SETTINGS), re.M)
    self.assertNotEmpty(headings)
    sections = set(headings)
    bad = []
    for path in _citing_files():
      # Join comment lines ("...section\n# 7.4") so that a wrapped citation is still read whole.
      text = re.sub(r"\n[ \t]*#[ \t]*", " ", _read(path))
      for match in _CITATION.finditer(text):
        for number in re.findall(r"\d+(?:\.\d+)?", match.group(1)):
          if number not in sections:
            bad.append(f"{os.path.relpath(path, _ROOT)}: {match.group(0)!r}")
    self.assertEmpty(bad, "citations of docs/paper_settings.md sections it does not have")

  def test_nothing_cites_the_out_of_repository_spec(self):
    citing = [os.path.relpath(path, _ROOT) for path in _citing_files()
              if _OLD_SPEC in _read(path)]
    self.assertEmpty(citing, f"files that cite {_OLD_SPEC} (not in the repository; cite "
                     "docs/paper_settings.md instead)")


if __name__ == "__main__":
  absltest.main()
