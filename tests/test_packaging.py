"""The installed package (the Docker image installs it, not the source tree) carries every file
the app reads besides its modules: a page's static file left out crashed the app at start-up."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_static_file_of_the_app_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    app = ROOT / "app"
    shipped = [
        path
        for path in sorted(app.rglob("*"))
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
        and "vendor" not in path.parts  # put there by `make web` or the image's build stage
    ]
    assert shipped, "the app has static files; this test must see them"
    missing = []
    for path in shipped:
        relative = path.relative_to(ROOT)
        package = ".".join(relative.parts[:-1])
        covered = False
        while package:
            inside = str(relative.relative_to(Path(*package.split("."))))
            if any(fnmatch.fnmatch(inside, pattern) for pattern in package_data.get(package, [])):
                covered = True
                break
            package = package.rpartition(".")[0]
        if not covered:
            missing.append(str(relative))
    assert missing == []
