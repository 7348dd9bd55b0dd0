"""Command palette entries: every key's action, found by what it does (from the app's ``BINDINGS``)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui_lab.ui.keys import KeyAction, key_actions


class LabCommands(Provider):
    """Every lab action, searchable by what it does; the key is shown beside it."""

    def _actions(self) -> list[KeyAction]:
        return key_actions(self.app.BINDINGS, self.app.get_key_display)

    async def discover(self) -> Hits:
        """All commands, shown when the palette opens."""
        for entry in self._actions():
            yield DiscoveryHit(entry.does, partial(self.app.run_action, entry.action), help=f"key: {entry.keys}")

    async def search(self, query: str) -> Hits:
        """Commands whose description matches ``query``."""
        matcher = self.matcher(query)
        for entry in self._actions():
            score = matcher.match(entry.does)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.does), partial(self.app.run_action, entry.action),
                          help=f"key: {entry.keys}")
