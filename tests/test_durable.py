"""gridwatch.durable: small files replaced whole, as they were (their mode, a link to them)."""

from __future__ import annotations

from gridwatch.durable import replace_durably


def test_a_file_reached_through_a_link_is_replaced_where_it_lies_and_keeps_its_mode(tmp_path):
    """Found by review: a tokens file linked from where the server reads it became a file of its own, and the
    server went on reading the old one."""
    real = tmp_path / "real" / "tokens.yaml"
    real.parent.mkdir()
    real.write_text("tokens: []\n")
    real.chmod(0o640)
    link = tmp_path / "tokens.yaml"
    link.symlink_to(real)
    replace_durably(link, b"tokens: [a]\n")
    assert link.is_symlink() and real.read_text() == "tokens: [a]\n"
    assert real.stat().st_mode & 0o777 == 0o640
