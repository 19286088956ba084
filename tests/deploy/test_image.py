"""The container image's Dockerfile passes hadolint, and hadolint is really looking."""

from conftest import DEPLOY, run, tool


def test_dockerfile_passes_hadolint():
    hadolint = tool("HADOLINT", "hadolint")
    result = run([hadolint, str(DEPLOY / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_worse_dockerfile(tmp_path):
    hadolint = tool("HADOLINT", "hadolint")
    text = (DEPLOY / "Dockerfile").read_text()
    worse = text.replace("USER 65532:65532", "RUN apt-get install curl\nUSER 65532:65532")
    (tmp_path / "Dockerfile").write_text(worse)
    result = run([hadolint, str(tmp_path / "Dockerfile")])
    assert result.returncode != 0 and "DL3008" in result.stdout, result.stdout


def test_image_is_distroless_non_root_with_a_health_check():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and "AS build" in stages[0], stages
    assert stages[1].startswith("FROM gcr.io/distroless/") and stages[1].endswith(":nonroot")
    assert "USER 65532:65532" in text
    assert 'HEALTHCHECK' in text and '"probe"' in text
    assert "cargo build --release --locked -p larder" in text
    assert "org.opencontainers.image.revision" in text
