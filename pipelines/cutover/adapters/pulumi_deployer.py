"""Deployer through the Pulumi Automation API: set the color's image in the stack config,
then `pulumi up` targeted at that color's resources only. The program itself deploys what
cutover's release state records (the config is its fallback before the first release), and
exports the digest of each color's image, which `deploy` returns for the release state.

The Automation API drives the Pulumi CLI, which this package does not ship: the logic here
talks to a small `Stack` protocol; `AutomationStack` is the real one, tests use a fake.

Every `up` refreshes first (state brought in line with what runs, cutover's weights
included), and runs with CUTOVER_LOCK_OWNER set to this operation's lock owner: the program
refuses to run while a cutover operation holds the environment's lock, except for it.

`retire` scales a color to 0 replicas the same way: the stack config `cutover:colors`
(the program's replicas per color, read as one JSON object) gets `<color>.replicas: 0`,
keeping what was there in `<color>.replicasBeforeRetire`, then a targeted `up`. The next
`deploy` to that color puts the replicas back first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cutover.model import Color


class Stack(Protocol):
    def set_config(self, key: str, value: str) -> None: ...

    def get_config(self, key: str) -> str | None: ...

    def outputs(self) -> dict[str, Any]: ...

    def up(self, targets: list[str], on_output: Callable[[str], None], env: Mapping[str, str]) -> str:
        """Refresh, then run a targeted update with `env` in the program's environment;
        returns the update's result ("succeeded", ...)."""
        ...


LOCK_OWNER_ENV = "CUTOVER_LOCK_OWNER"  # read by infra/cutover_infra/program.py
COLORS_KEY = "cutover:colors"  # {"blue": {"replicas": 3}, ...}: infra/cutover_infra/config.py
RETIRED_FROM = "replicasBeforeRetire"  # the replicas a retired color had (None: the default)


class PulumiDeployer:
    """A service's image per color lives in stack config `cutover:services.<service>.<color>Image`;
    the program exports, in `cutover_envs.<service>.colors.<color>.urns`, the URNs an update of
    that color must target. Without `service`: the single-service layout's keys and outputs
    (`cutover:<color>Image`, `cutover:colors`, `cutover_env`, `imageDigests.<color>`)."""

    def __init__(
        self,
        stack: Stack,
        config_key: str | None = None,
        lock_owner: str | None = None,
        service: str | None = None,
    ) -> None:
        self.stack = stack
        self.service = service
        base = f"cutover:services.{service}" if service else "cutover"
        self.config_key = config_key or (f"{base}.{{color}}Image" if service else "cutover:{color}Image")
        self._lock_owner = lock_owner
        self.colors_key = f"{base}.colors" if service else COLORS_KEY

    def _outputs(self, name: str) -> dict[str, Any]:
        """The stack output `name` for this service (its entry of the per-service map)."""
        outputs = self.stack.outputs()
        if self.service is None:
            return dict(outputs.get(name) or {})
        per_service = outputs.get(f"{name}s" if name == "cutover_env" else name) or {}
        return dict(per_service.get(self.service) or {})

    @property
    def lock_owner(self) -> str:
        """Who holds the lock this deploy runs under (the release machine's actor)."""
        if self._lock_owner is None:
            from cutover.machine import default_actor

            self._lock_owner = default_actor()
        return self._lock_owner

    def _key(self, color: Color) -> str:
        return self.config_key.format(color=color)

    def current_image(self, color: Color) -> str | None:
        return self.stack.get_config(self._key(color))

    def targets(self, color: Color) -> list[str]:
        env = self._outputs("cutover_env")
        urns = env.get("colors", {}).get(color, {}).get("urns") or []
        if not urns:
            where = f"cutover_envs.{self.service}" if self.service else "cutover_env"
            raise RuntimeError(
                f"stack output {where}.colors.{color}.urns is empty: run a full `pulumi up` once first"
            )
        return [str(urn) for urn in urns]

    def _colors(self) -> tuple[str | None, dict[str, Any]]:
        """`cutover:colors` as stored (to put back) and as an object."""
        raw = self.stack.get_config(self.colors_key)
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise RuntimeError(f"stack config {self.colors_key} must be a JSON object (got {raw!r})")
        return raw, value

    def is_retired(self, color: Color) -> bool:
        section = self._colors()[1].get(color)
        return isinstance(section, dict) and section.get("replicas") == 0

    def retire(self, color: Color, progress: Callable[[str], None]) -> None:
        """Scale `color` to 0 replicas: `<color>.replicas: 0` in `cutover:colors`, then a
        targeted `up`; a failed `up` puts the config back."""
        targets = self.targets(color)  # before touching config: fail with nothing changed
        raw, colors = self._colors()
        section = dict(colors.get(color) or {})
        retired = {**section, "replicas": 0, RETIRED_FROM: section.get("replicas")}
        self.stack.set_config(self.colors_key, json.dumps({**colors, color: retired}))
        progress(f"pulumi up --target ({len(targets)} resources of {color}), replicas -> 0")
        self._up(color, targets, progress, lambda: self.stack.set_config(self.colors_key, raw or "{}"))

    def _up(
        self, color: Color, targets: list[str], progress: Callable[[str], None], undo: Callable[[], None]
    ) -> None:
        """A targeted `up`; when it fails, `undo` leaves the config describing what runs."""
        try:
            result = self.stack.up(targets, progress, {LOCK_OWNER_ENV: self.lock_owner})
        except Exception:
            undo()
            raise
        if result != "succeeded":
            undo()
            raise RuntimeError(f"pulumi up for {color} ended {result}")

    def deploy(self, color: Color, image: str, progress: Callable[[str], None]) -> str | None:
        targets = self.targets(color)  # before touching config: fail with nothing changed
        previous = self.current_image(color)
        colors_raw, colors = self._colors()
        section = colors.get(color)
        if isinstance(section, dict) and RETIRED_FROM in section:  # retired: its replicas back
            back = {key: value for key, value in section.items() if key not in (RETIRED_FROM, "replicas")}
            if section[RETIRED_FROM] is not None:
                back["replicas"] = section[RETIRED_FROM]
            self.stack.set_config(self.colors_key, json.dumps({**colors, color: back}))
            progress(f"{color} was retired: replicas back to {section[RETIRED_FROM] or 'the default'}")
        self.stack.set_config(self._key(color), image)
        progress(f"pulumi up --target ({len(targets)} resources of {color}), image {previous} -> {image}")

        def undo() -> None:
            if previous is not None:  # leave the config describing what actually runs
                self.stack.set_config(self._key(color), previous)
            if colors_raw is not None and isinstance(section, dict) and RETIRED_FROM in section:
                self.stack.set_config(self.colors_key, colors_raw)

        self._up(color, targets, progress, undo)
        digest = self._outputs("imageDigests").get(color)
        return str(digest) if digest else None  # the machine records it in the release state


class AutomationStack:
    """The real Stack: needs the Pulumi CLI on PATH and the project's work dir."""

    def __init__(self, stack_name: str, work_dir: str) -> None:
        from pulumi import automation

        self._automation = automation
        self._stack = automation.select_stack(stack_name=stack_name, work_dir=work_dir)

    def set_config(self, key: str, value: str) -> None:
        # `cutover:services.<name>.<field>` is a path into the services object
        path = "." in key.partition(":")[2]
        self._stack.set_config(key, self._automation.ConfigValue(value=value), path=path)

    def get_config(self, key: str) -> str | None:
        try:
            return str(self._stack.get_config(key, path="." in key.partition(":")[2]).value)
        except self._automation.CommandError:
            return None

    def outputs(self) -> dict[str, Any]:
        return {name: output.value for name, output in self._stack.outputs().items()}

    def up(self, targets: list[str], on_output: Callable[[str], None], env: Mapping[str, str]) -> str:
        workspace = self._stack.workspace  # its env_vars reach the CLI, hence the program
        saved = dict(workspace.env_vars)
        workspace.env_vars = {**saved, **env}
        try:
            result = self._stack.up(target=targets, target_dependents=True, refresh=True, on_output=on_output)
        finally:
            workspace.env_vars = saved
        return str(result.summary.result)
