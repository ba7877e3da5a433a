"""The REST handlers of the resource kinds: one set (create, replace, patch, delete, get,
list) per kind (teams, clusters, route configs, listeners, dataplanes, secrets)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable

from aiohttp import web

from raftplane.api import bodies, dry_run, fleet
from raftplane.api.context import NODE
from raftplane.api.inputs import if_match, read_json, read_merge_patch, visible_teams
from raftplane.api.kinds import KindSpec
from raftplane.api.merge_patch import merge_patch
from raftplane.api.problems import Problem
from raftplane.api.reads import gone, int_param, revision_headers, revision_param
from raftplane.api.routing import Route
from raftplane.api.writes import execute_prepared_write, execute_write, refused
from raftplane.auth import secret_box
from raftplane.model import rules
from raftplane.model.kinds import Kind, Resource, owner_team
from raftplane.storage.store import HistoryPruned
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds import translate

MAX_PAGE = 1000
WRITE_QUERY = ("dryRun", "waitFor", "timeout")


class KindHandlers:
    """The handlers of one resource kind."""

    def __init__(self, spec: KindSpec) -> None:
        self.spec = spec
        self.kind = spec.kind

    # ---- helpers ------------------------------------------------------------------------
    def _path_name(self, request: web.Request) -> str:
        return request.match_info[self.spec.name_param]

    def _path_team(self, request: web.Request) -> str | None:
        return request.match_info.get("team") if self.spec.under_team else None

    def _stored_name(self, request: web.Request) -> str:
        team = self._path_team(request)
        name = self._path_name(request)
        return f"{team}/{name}" if team else name

    def _item_url(self, resource: Resource) -> str:
        url = self.spec.item.replace("{name}", resource["name"])
        return url.replace("{team}", self.kind.owner(resource))

    def _validate(self, request: web.Request, body: object, path_name: str | None
                  ) -> Resource:
        try:
            resource = bodies.validate_resource(
                self.kind, body, path_name=path_name, path_team=self._path_team(request)
            )
        except bodies.ValidationFailed as exc:
            raise Problem(
                422,
                "; ".join(f"{e.field or 'body'}: {e.message}" for e in exc.errors[:5]),
                errors=[{"field": e.field, "message": e.message} for e in exc.errors],
                slug="invalid-fields",
            ) from None
        store = request.app[NODE].store
        filters = {name: found for name in translate.referenced_filters(self.kind, resource)
                   if (found := store.get(Kind.FILTERS, name)) is not None}
        request["checked_filters"] = filters  # pinned in the command (bodies.pin_filters)
        try:  # what cannot become Envoy config is refused here, never NACKed later
            translate.check_translatable(self.kind, resource, filters)
        except translate.TranslationError as exc:
            raise Problem(422, str(exc), errors=[{"field": exc.field, "message": exc.message}],
                          slug="invalid-fields") from None
        return resource

    def _check_visible(self, request: web.Request, resource: Resource) -> None:
        """A team-bound caller may only write resources of its own teams."""
        teams = visible_teams(request)
        owner = resource["name"] if not self.kind.team_owned else resource.get("team")
        if teams is not None and owner not in teams:
            raise Problem(403, f"this token is not bound to team '{owner}'",
                          errors=[{"field": self.kind.owner_field,
                                   "message": f"not bound to team '{owner}'"}])

    def _put_command(self, request: web.Request, resource: Resource, mode: wire.PutMode,
                     expected: int) -> tuple[wire.Command, Callable[[], None]]:
        node = request.app[NODE]
        name = bodies.stored_name(self.kind, resource)
        refs = bodies.pin_filters(bodies.references(self.kind, resource),
                                  request.get("checked_filters", {}))
        if self.kind == Kind.SECRETS:  # only ciphertext goes into the log
            resource = seal_secret(node.config.secret, resource)
        command = wire.Command()
        command.put.CopyFrom(wire.Put(
            kind=self.kind, name=name, mode=mode, expected_revision=expected,
            value_json=json.dumps(resource, separators=(",", ":")).encode(),
            team=resource.get("team", "") if self.kind.team_owned else "",
        ))
        for ref in refs:
            command.put.references.add(kind=ref.kind, name=ref.name, field=ref.field,
                                       expected_revision=ref.expected_revision)

        def precheck() -> None:  # the rules apply enforces, checked before proposing
            with node.store.reader() as reader:  # one read txn for all the rules' reads
                current = reader.get(self.kind, name)
                if mode == wire.PUT_MODE_REPLACE:  # another team's: as if it did not exist
                    current = _visible(self.kind, current, visible_teams(request))
                refusal = rules.check_put(reader, kind=self.kind, name=name, mode=mode,
                                          expected=expected, team=command.put.team,
                                          resource=resource, refs=refs, current=current)
            if refusal is not None:
                raise refused(refusal)

        return command, precheck

    # ---- handlers -----------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.StreamResponse:
        raw, body = await read_json(request)
        resource = self._validate(request, body, None)
        self._check_visible(request, resource)
        command, precheck = self._put_command(request, resource, wire.PUT_MODE_CREATE, 0)
        if dry_run.wanted(request):
            precheck()
            return await dry_run.answer(request, command, resource=public(self.kind, resource))
        wait = fleet.wait_param(request)
        response = await execute_write(request, raw, command, precheck,
                                       location=self._item_url(resource))
        return await self._waited(request, response, resource, wait)

    async def replace(self, request: web.Request) -> web.StreamResponse:
        expected = if_match(request)
        raw, body = await read_json(request)
        resource = self._validate(request, body, self._path_name(request))
        self._check_visible(request, resource)
        command, precheck = self._put_command(request, resource, wire.PUT_MODE_REPLACE, expected)
        if dry_run.wanted(request):
            precheck()
            return await dry_run.answer(request, command, resource=public(self.kind, resource))
        wait = fleet.wait_param(request)
        response = await execute_write(request, raw, command, precheck)
        return await self._waited(request, response, resource, wait)

    async def patch(self, request: web.Request) -> web.StreamResponse:
        """Apply a merge patch to the stored resource, then write it as a PUT would, with the
        revision it read as the precondition: a concurrent write in between answers 412."""
        expected = if_match(request)
        raw, patch = await read_merge_patch(request)
        node = request.app[NODE]
        name = self._stored_name(request)
        read: list[int] = []  # the revision the patch was applied to

        def prepare() -> tuple[wire.Command, Callable[[], None]]:
            current = node.store.get(self.kind, name, teams=visible_teams(request))
            if current is None:
                raise refused(rules.not_found(self.kind, name))
            stale = rules.stale_revision(self.kind, name, current, expected) if expected else None
            if stale is not None:
                raise refused(stale)
            read.append(current["revision"])
            merged = merge_patch(bodies.editable(self.kind, current), patch)
            self._check_fixed(current, merged)
            resource = self._validate(request, merged, self._path_name(request))
            self._check_visible(request, resource)
            return self._put_command(request, resource, wire.PUT_MODE_REPLACE, read[0])

        if dry_run.wanted(request):
            command, precheck = prepare()
            precheck()
            return await dry_run.answer(request, command)
        wait = fleet.wait_param(request)
        try:
            response = await execute_prepared_write(request, raw, prepare)
            return await self._waited(request, response, node.store.get(self.kind, name), wait)
        except Problem as problem:
            if problem.status == 412 and read:  # raced: another write came in between
                _raced(problem, f"{self.kind} '{name}'", read[0],
                       node.store.get(self.kind, name, teams=visible_teams(request)))
            raise

    async def _waited(self, request: web.Request, response: web.StreamResponse,
                      resource: Resource | None, wait: float | None) -> web.StreamResponse:
        """With ?waitFor=acked: the answer once the team's Envoys hold the write (or 202)."""
        if wait is None or self.kind == Kind.TEAMS:
            return response
        team = self.kind.owner(resource) if resource is not None else self._path_team(request)
        return await fleet.wait_acked(request, response, team, wait)

    def _check_fixed(self, current: Resource, merged: object) -> None:
        """A patch may not rename a resource or move it to another team (422)."""
        if not isinstance(merged, dict):
            return  # validation says what it must be
        fixed = ("name", "team") if self.kind.team_owned else ("name",)
        changed = [key for key in fixed if merged.get(key) != current.get(key)]
        if changed:
            raise Problem(422, f"a PATCH cannot change {' or '.join(changed)}",
                          errors=[{"field": key, "message": "cannot change in a PATCH"}
                                  for key in changed], slug="invalid-fields")

    async def delete(self, request: web.Request) -> web.StreamResponse:
        expected = if_match(request)
        node = request.app[NODE]
        name = self._stored_name(request)
        command = wire.Command()
        command.delete.CopyFrom(wire.Delete(kind=self.kind, name=name, expected_revision=expected))

        def precheck() -> None:  # the rules apply enforces, checked before proposing
            current = node.store.get(self.kind, name, teams=visible_teams(request))
            refusal = rules.check_delete(node.store, kind=self.kind, name=name,
                                         expected=expected, current=current)
            if refusal is not None:
                raise refused(refusal)

        if dry_run.wanted(request):
            precheck()
            return await dry_run.answer(request, command)
        wait = fleet.wait_param(request)
        current = node.store.get(self.kind, name)
        response = await execute_write(request, b"", command, precheck)
        return await self._waited(request, response, current, wait)

    async def get(self, request: web.Request) -> web.StreamResponse:
        # ?minRevision= and ?consistency= were honoured by the auth middleware (before auth).
        name = self._stored_name(request)
        if "atRevision" in request.query:
            resource = self._at_revision(request, name, revision_param(request, "atRevision"))
        else:
            resource = request.app[NODE].store.get(self.kind, name,
                                                   teams=visible_teams(request))
        if resource is None:
            raise Problem(404, f"no {self.kind} '{name}'", headers=revision_headers(request))
        headers = revision_headers(request)
        headers["ETag"] = f'"{resource["revision"]}"'
        return web.json_response(public(self.kind, resource), headers=headers)

    def _at_revision(self, request: web.Request, name: str, revision: int) -> Resource | None:
        """(kind, name) as it was at `revision`, if the caller may see it."""
        try:
            resource = request.app[NODE].store.get_at(self.kind, name, revision)
        except HistoryPruned as exc:
            raise gone(exc) from None
        return _visible(self.kind, resource, visible_teams(request))

    def _list_at_revision(self, request: web.Request, revision: int, team: str | None,
                          limit: int) -> web.StreamResponse:
        """A page of the kind as it was at `revision`: today's names and those changed since,
        each read as of then (O(resources of the kind + changes since) per page)."""
        store = request.app[NODE].store
        names: set[str] = set()
        cursor = None
        while True:
            page = store.list(self.kind, limit=MAX_PAGE, cursor=cursor, team=team)
            names.update(self.kind.stored_name(r) for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        start = revision + 1
        while True:
            batch, pruned = store.changes_since(start, limit=MAX_PAGE)
            if start <= pruned:
                raise gone(HistoryPruned(pruned + 1))
            names.update(c["name"] for c in batch if c["kind"] == self.kind)
            if not batch:
                break
            start = batch[-1]["revision"] + 1
        after = request.query.get("cursor") or ""
        items: list[Resource] = []
        next_cursor = None
        for name in sorted(n for n in names if n > after):
            resource = self._at_revision(request, name, revision)
            if resource is None or (team is not None and owner_team(self.kind, resource)
                                    != team):
                continue
            if len(items) == limit:
                next_cursor = items[-1]["name"] if not self.kind.name_in_team else \
                    self.kind.stored_name(items[-1])
                break
            items.append(resource)
        headers = revision_headers(request)
        return web.json_response({"items": [public(self.kind, r) for r in items],
                                  "nextCursor": next_cursor, "revision": revision},
                                 headers=headers)

    async def list(self, request: web.Request) -> web.StreamResponse:
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        team = self._path_team(request) or request.query.get("team") or None
        if "atRevision" in request.query:
            return self._list_at_revision(request, revision_param(request, "atRevision"),
                                          team, limit)
        page = request.app[NODE].store.list(
            self.kind, limit=limit, cursor=request.query.get("cursor") or None, team=team,
            teams=visible_teams(request),
        )
        headers = revision_headers(request)
        body = {"items": [public(self.kind, item) for item in page.items],
                "nextCursor": page.next_cursor,
                "revision": int(headers["X-Raftplane-Revision"])}
        return web.json_response(body, headers=headers)

    def routes(self) -> builtins.list[Route]:
        spec, kind = self.spec, self.kind
        read, write = f"{spec.scope}:read", f"{spec.scope}:write"
        page_q = ("limit", "cursor", "atRevision", "minRevision", "consistency",
                  "waitSeconds")
        routes = [
            Route("POST", spec.collection, self.create, write, f"Create a {spec.title}", kind,
                  body=True, statuses=(200, 201, 202, 400, 409, 413, 422, 503, 504),
                  query=WRITE_QUERY, tags=(spec.title,), relay_command=True),
            Route("GET", spec.collection, self.list, read, f"List {spec.title}s", kind,
                  statuses=(200, 400, 410, 503, 504),
                  query=page_q if spec.under_team else (*page_q, "team"), tags=(spec.title,)),
            Route("GET", spec.item, self.get, read, f"Get a {spec.title}", kind,
                  statuses=(200, 400, 404, 410, 503, 504), query=page_q[2:],
                  tags=(spec.title,)),
        ]
        if "PUT" in spec.item_methods:
            routes.append(Route("PUT", spec.item, self.replace, write,
                                f"Replace a {spec.title} (If-Match for optimistic concurrency)",
                                kind, body=True,
                                statuses=(200, 202, 400, 404, 412, 413, 422, 503, 504),
                                query=WRITE_QUERY, tags=(spec.title,), relay_command=True))
            routes.append(Route("PATCH", spec.item, self.patch, write,
                                f"Change a {spec.title} with a JSON merge patch",
                                kind, body=True,
                                statuses=(200, 202, 400, 404, 409, 412, 413, 415, 422, 503,
                                          504),
                                query=WRITE_QUERY, tags=(spec.title,),
                                description=patch_description(kind)))
        if "DELETE" in spec.item_methods:
            routes.append(Route("DELETE", spec.item, self.delete, write,
                                f"Delete a {spec.title}", kind,
                                statuses=(200, 202, 400, 404, 409, 412, 503, 504),
                                query=WRITE_QUERY, tags=(spec.title,), relay_command=True))
        return routes


def patch_description(kind: Kind) -> str:
    """What OpenAPI says of PATCH on `kind`."""
    text = (
        "An RFC 7396 JSON merge patch (Content-Type: application/merge-patch+json, or "
        "application/json; anything else is 415) applied to the stored resource without its "
        "server fields (revision, createdAt, updatedAt): null removes a field, an object is "
        "merged, anything else (arrays too) replaces. `name` and `team` cannot change (422). "
        "The result is validated and written as a PUT would be (404, 409, 422 as there). "
        "If-Match is optional; either way the write is conditional on the revision the "
        "patch was applied to, so a concurrent change answers 412 with currentRevision "
        "(fetch and retry); nothing is retried by the server.")
    if kind == Kind.SECRETS:
        text += (" Secret material is write-only, so the patched document holds none: a "
                 "PATCH of a secret must carry the type's complete material (e.g. "
                 '{"value": "..."} or {"certificateChain": "...", "privateKey": "..."}), '
                 "which replaces all of the old material as a rotation (optional parts such "
                 "as matchSubjectAltNames are gone unless the patch repeats them); a patch "
                 "without the required material is 422 naming the missing field.")
    return text


def _raced(problem: Problem, what: str, read: int, now: Resource | None) -> None:
    """Say in a PATCH's 412 that the resource changed after the patch read it, and where it
    is now (`currentRevision`)."""
    problem.extra["currentRevision"] = now["revision"] if now else None
    problem.detail = (f"{what} changed after this PATCH read it at revision {read}: nothing "
                      "was written; apply the patch again")
    problem.errors = [{"field": "revision", "message": f"changed since revision {read}"}]


def public(kind: str, resource: Resource) -> Resource:
    """What a read may show of a stored resource: a secret without its sealed material."""
    return secret_box.public_view(resource) if kind == Kind.SECRETS else resource


def seal_secret(cluster_secret: str | None, resource: Resource) -> Resource:
    """The stored form of a validated secret: its public facts and its material sealed."""
    if not cluster_secret:
        raise Problem(503, "this node has no cluster secret to seal secrets with")
    kind = resource["type"]
    material = {key: resource[key] for key in secret_box.MATERIAL_FIELDS[kind]
                if key in resource}
    stored: Resource = {key: resource[key] for key in ("name", "team", "type")}
    stored.update(secret_box.public_facts(cluster_secret, kind, material))
    stored[secret_box.SEALED_FIELD] = secret_box.seal(
        cluster_secret, resource["team"], resource["name"], kind, material)
    return stored


def _visible(kind: str, resource: Resource | None, teams: set[str] | None
             ) -> Resource | None:
    """`resource`, or None when it belongs to a team the caller cannot see."""
    if resource is None or teams is None or owner_team(kind, resource) in teams:
        return resource
    return None
