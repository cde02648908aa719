"""The browser driven headless by Textual's pilot (`App.run_test`): keys, the filter bar,
selection, the detail pane, the Wireshark filter and the export.

Each test is a plain function running its scenario with `asyncio.run` (no pytest plugin
needed). Skipped where Textual is not installed (it is the `browse` extra)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("textual", reason="Textual (the 'browse' extra) is not installed")

from conftest import REPO, run_cli                              # noqa: E402
from analyzer.browse.app import BrowseApp                       # noqa: E402
from analyzer.browse.stream import stream_ladder               # noqa: E402
from analyzer.settings import Settings                         # noqa: E402

MIXED = str(REPO / "samples" / "mixed.pcap")


def _run(scenario, captures=(MIXED,), size=(120, 40)) -> BrowseApp:
    app = BrowseApp(list(captures), Settings())

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            for _ in range(400):                    # the analysis runs in a worker thread
                if app.ready or app.return_code is not None:
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def _text(app: BrowseApp, selector: str) -> str:
    return str(app.query_one(selector).render())


async def _detail(app: BrowseApp, pilot) -> str:
    """The detail pane once the ladder is read."""
    for _ in range(200):
        await pilot.pause(0.05)
        if "Ladder (" in app.detail.text():
            break
    return app.detail.text()


def test_table_lists_every_connection_and_the_detail_follows_the_cursor() -> None:
    seen = {}

    async def scenario(app, pilot):
        assert app.focused is app.table
        assert len(app.model.view) == 16
        assert _text(app, "#caption").startswith("16 connections")
        await pilot.press("down", "down", "down")
        assert app.selected.id == 3
        summary = app.detail.text()
        assert "stream 3  192.168.1.23:52050 → 203.0.113.20:443" in summary
        assert "tcp.stream eq 3" in summary and "reset by resp" in summary
        text = await _detail(app, pilot)
        seen["explanation"], seen["ladder"] = text.split("\nLadder (")
        seen["ladder"] = "Ladder (" + seen["ladder"]
        await pilot.press("end")
        assert app.selected.id == 15
        await pilot.press("home")
        assert app.selected.id == 0

    app = _run(scenario)
    rows = stream_ladder([MIXED], Settings(), app.model.results[3])
    lines = seen["ladder"].splitlines()
    assert lines[0] == "Ladder (%d packets)" % len(rows)
    assert [int(line.split()[0]) for line in lines[2:-1]] == [row.frame for row in rows]
    assert "R." in lines[-2]
    cli = run_cli("--stream", "3", MIXED).stdout.decode().splitlines()
    end = next(line for line in cli if line.split()[:1] == ["end"])
    assert lines[-1].split() == end.split()         # the end row `--stream 3` prints
    assert "Explanation" in seen["explanation"] and "reset" in seen["explanation"]


def test_filter_bar_applies_a_good_expression_and_shows_a_bad_one_with_a_caret() -> None:
    async def scenario(app, pilot):
        await pilot.press("slash")
        assert app.focused.id == "filter"
        await pilot.press(*"tcp.port == 44x")
        await pilot.pause()
        error = _text(app, "#filter-error")
        assert error.splitlines() == ["  tcp.port == 44x", "              ^^^",
                                      "  tcp.port takes an integer, not '44x'"]
        await pilot.press("enter")                      # a bad filter changes nothing
        assert len(app.model.view) == 16
        for _ in range(3):
            await pilot.press("backspace")
        await pilot.press(*"443", "enter")
        await pilot.pause()
        assert app.query_one("#filter-error").display is False
        ids = [app.model.row(i).id for i in range(len(app.model.view))]
        assert ids == [1, 3, 10, 11, 15]                # stream numbers are not renumbered
        assert _text(app, "#caption").startswith("5 of 16 connections shown")
        assert app.focused is app.table
        assert "stream 1 " in app.detail.text()
        await pilot.press("slash", *" and handshake == complete", "enter")
        assert [app.model.row(i).id for i in range(len(app.model.view))] == [1, 3, 10, 15]
        await pilot.press("slash", *" and severity == error", "enter")
        assert app.model.view == []
        assert "No connection matches" in app.detail.text()

    _run(scenario)


def test_sort_keys_and_header_click_keep_the_selected_connection() -> None:
    async def scenario(app, pilot):
        await pilot.press("down", "down")
        assert app.selected.id == 2
        await pilot.press("s")                  # client
        assert app.model.sort_column == 1 and app.selected.id == 2
        await pilot.press("r")
        assert app.model.descending and app.selected.id == 2
        clients = [app.model.row(i).orig_raw for i in range(len(app.model.view))]
        assert clients == sorted(clients, key=lambda a: (len(a[0]), a[0], a[1]), reverse=True)
        assert "sorted by client (descending)" in _text(app, "#caption")
        x = sum(app.model.widths[:3]) + 2 * 3 + 2   # the "handshake" title
        await pilot.click("#table", offset=(x, 0))
        assert app.model.sort_column == 3 and not app.model.descending
        words = [app.model.row(i).handshake for i in range(len(app.model.view))]
        assert words == sorted(words)
        await pilot.click("#table", offset=(x, 0))   # again: the other way round
        assert app.model.sort_column == 3 and app.model.descending
        await pilot.press("S")
        assert app.model.sort_column == 2

    _run(scenario)


def test_wireshark_key_copies_and_prints_the_display_filter() -> None:
    async def scenario(app, pilot):
        await pilot.press("down", "down", "down", "down", "w")
        assert app.clipboard == "tcp.stream eq 4"
        await pilot.press("q")

    app = _run(scenario)
    assert app.printed == ["tcp.stream eq 4"]


def test_export_writes_the_shown_connections_as_the_json_report(tmp_path: Path) -> None:
    target = tmp_path / "shown.json"

    async def scenario(app, pilot):
        await pilot.press("slash", *"close == four_way", "enter")
        await pilot.press("e")
        await pilot.pause()
        box = app.screen.query_one("#export-path")
        box.value = str(target)
        await pilot.press("enter")
        for _ in range(100):
            await pilot.pause(0.05)
            if target.exists():
                break

    _run(scenario)
    assert target.read_bytes() == run_cli("-f", "json", "--filter", "close == four_way",
                                          MIXED).stdout
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert [c["id"] for c in doc["connections"]] == [1, 6, 10, 12, 13, 15]


def test_narrow_and_wide_terminals_stack_or_split_the_panes() -> None:
    async def narrow(app, pilot):
        assert app.query_one("#body").has_class("tall")
        assert app.table.size.width == 80

    async def wide(app, pilot):
        assert app.query_one("#body").has_class("wide")
        assert app.table.size.width < 200

    _run(narrow, size=(80, 24))
    _run(wide, size=(200, 50))


def test_unreadable_capture_ends_the_browser_with_exit_code_3(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")

    async def scenario(app, pilot):
        await pilot.pause()

    app = _run(scenario, captures=(str(bad),))
    assert app.exit_code == 3
    assert app.messages and app.messages[0].startswith("error: ")


def test_keys_scroll_sideways_and_move_between_the_panes() -> None:
    async def scenario(app, pilot):
        await pilot.press("right", "right", "right")
        assert app.table.scroll_offset.x == 3          # the table is wider than 80 columns
        await pilot.press("left")
        assert app.table.scroll_offset.x == 2
        await pilot.press("slash")
        assert app.focused.id == "filter"
        await pilot.press("escape")
        assert app.focused is app.table
        await pilot.press("tab")
        assert app.focused is app.detail
        await pilot.press("down")                       # scrolls the detail, not the table
        assert app.selected.id == 0 and app.detail.scroll_offset.y == 1

    _run(scenario, size=(80, 24))


def test_the_cursor_row_stays_on_screen_at_the_end() -> None:
    async def scenario(app, pilot):
        await pilot.press("end")
        await pilot.pause()
        table = app.table
        shown = table.scroll_offset.y + table.scrollable_content_region.height - 1
        assert app.selected.id == 15 and table.cursor < shown
        lines = [table.render_line(y).text for y in range(table.scrollable_content_region.height)]
        assert any(line.lstrip().startswith("15 ") for line in lines)

    _run(scenario, size=(80, 24))


def test_filter_option_starts_the_browser_filtered() -> None:
    async def scenario(app, pilot):
        assert app.query_one("#filter").value == "handshake == refused"
        assert [app.model.row(i).id for i in range(len(app.model.view))] == [2]
        assert app.selected.id == 2

    app = BrowseApp([MIXED], Settings(), "handshake == refused")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            while not app.ready:
                await pilot.pause(0.05)
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())


def test_several_small_captures_are_one_capture_and_each_ladder_is_its_own() -> None:
    files = [str(REPO / "samples" / name) for name in
             ("four_way_close.pcap", "refused.pcap", "ipv6.pcap")]
    seen = {}

    async def scenario(app, pilot):
        seen["ids"] = [r.id for r in app.model.results]
        await pilot.press("end")
        seen["detail"] = await _detail(app, pilot)
        seen["last"] = app.selected

    _run(scenario, captures=files)
    rows = stream_ladder(files, Settings(), seen["last"])
    assert seen["ids"] == list(range(len(seen["ids"]))) and len(seen["ids"]) >= 3
    ladder = seen["detail"].split("\nLadder (")[1].splitlines()
    frames = [int(line.split()[0]) for line in ladder[2:-1]]
    assert ladder[-1].startswith("  end")
    assert frames == [row.frame for row in rows]


def test_keys_pressed_while_the_analysis_runs_do_nothing(monkeypatch) -> None:
    import threading
    from analyzer.browse import app as app_module
    go = threading.Event()
    real = app_module.analyze

    def held(*args, **kwargs):              # the analysis waits until the keys are in
        go.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "analyze", held)
    app = BrowseApp([MIXED], Settings())

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("s", "r", "e", "w", "slash", "x")     # before the table exists
            assert not app.ready
            go.set()
            while not app.ready:
                await pilot.pause(0.05)
            await pilot.pause()
            assert app.model.sort_column == 0 and not app.model.descending
            assert app.printed == [] and app.screen is app.screen_stack[0]
            assert app.focused is app.table

    asyncio.run(main())
