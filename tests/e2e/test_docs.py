"""The README's copy of deploy/flaskhost.toml is the file the seed tests run, verbatim."""

from fhtest import ROOT


def test_readme_embeds_the_deploy_config_verbatim():
    readme = (ROOT / "README.md").read_text()
    config = (ROOT / "deploy" / "flaskhost.toml").read_text().rstrip()
    assert f"```toml\n{config}\n```" in readme
