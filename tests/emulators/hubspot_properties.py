"""Properties v3 (definitions, groups) and deal pipelines endpoints of the HubSpot emulator."""

from __future__ import annotations

import re

from tests.emulators.hubspot_model import (
    ApiError,
    Json,
    PropertyDef,
    PropertyGroup,
    normalize_options,
    not_found,
    validation_error,
)
from tests.emulators.hubspot_routes import (
    SEG,
    Ctx,
    Handler,
    Reply,
    RouteGroup,
    object_scope,
    resolve_type,
    schema_scope,
)
from tests.emulators.hubspot_state import DEAL_STAGES

PROPERTY_TYPES = frozenset(
    {"bool", "date", "datetime", "enumeration", "number", "phone_number", "string"}
)
FIELD_TYPES = frozenset(
    {
        "booleancheckbox",
        "calculation_equation",
        "checkbox",
        "date",
        "file",
        "html",
        "number",
        "phonenumber",
        "radio",
        "select",
        "text",
        "textarea",
    }
)
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PropertyRoutes(RouteGroup):
    def table(self) -> list[tuple[str, str, Handler, bool]]:
        seg = SEG
        props = rf"/crm/v3/properties/(?P<otype>{seg})"
        return [
            ("GET", props, self.props_list, False),
            ("POST", props, self.props_create, False),
            ("GET", rf"{props}/groups", self.groups_list, False),
            ("POST", rf"{props}/groups", self.groups_create, False),
            ("GET", rf"{props}/groups/(?P<name>{seg})", self.groups_get, False),
            ("GET", rf"{props}/(?P<name>{seg})", self.props_get, False),
            ("PATCH", rf"{props}/(?P<name>{seg})", self.props_update, False),
            ("DELETE", rf"{props}/(?P<name>{seg})", self.props_archive, False),
            ("GET", rf"/crm/v3/pipelines/(?P<otype>{seg})", self.pipelines, False),
        ]

    # ------------------------------------------------------------------ properties v3

    def _prop(self, object_type: str, name: str, *, archived: bool = False) -> PropertyDef:
        prop = self.state.properties[object_type].get(name)
        if prop is None or (prop.archived_at is not None) != archived:
            raise not_found(f"Unable to find property {name} for object type {object_type}.")
        return prop

    def props_list(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "read"))
        archived = ctx.q_bool("archived")
        results = [
            p.to_json()
            for p in self.state.properties[object_type].values()
            if (p.archived_at is not None) == archived
        ]
        return Reply(200, {"results": results})

    def props_get(self, ctx: Ctx, otype: str, name: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "read"))
        return Reply(200, self._prop(object_type, name, archived=ctx.q_bool("archived")).to_json())

    def _options(self, ctx: Ctx, raw: Json) -> list[dict[str, Json]]:
        if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
            raise validation_error("options must be an array of OptionInput objects")
        for option in raw:
            ctx.required(option, "OptionInput", "label", "value", "hidden")
            if "value" not in option or "label" not in option:
                raise validation_error("Each option needs label and value")
        values = [str(o["value"]) for o in raw]
        if len(values) != len(set(values)):
            raise validation_error(f"Duplicate option values: {values}")
        return normalize_options(raw)

    def _check_types(self, ptype: Json, field_type: Json) -> None:
        if ptype not in PROPERTY_TYPES:
            raise validation_error(f"type must be one of {sorted(PROPERTY_TYPES)}, got {ptype!r}")
        if field_type not in FIELD_TYPES:
            raise validation_error(
                f"fieldType must be one of {sorted(FIELD_TYPES)}, got {field_type!r}"
            )
        if field_type in {"checkbox", "radio", "select"} and ptype != "enumeration":
            raise validation_error(f"fieldType {field_type} requires type enumeration")

    def props_create(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "write"))
        body = ctx.json_object()
        ctx.required(body, "PropertyCreate", "name", "label", "type", "fieldType", "groupName")
        name = body.get("name")
        if not isinstance(name, str) or not _PROPERTY_NAME.match(name):
            raise validation_error(
                f"Invalid property name {name!r}: lowercase letter first, [a-z0-9_]"
            )
        if name in self.state.properties[object_type]:
            raise ApiError(
                409,
                f"Property named '{name}' already exists.",
                "OBJECT_ALREADY_EXISTS",
                sub_category="PropertyCreateError.PROPERTY_EXISTS",
            )
        self._check_types(body.get("type"), body.get("fieldType"))
        group = body.get("groupName")
        if group not in self.state.groups[object_type]:
            raise validation_error(f"Property group {group!r} does not exist")
        prop = self.state.define_property(
            object_type,
            name,
            label=str(body.get("label") or name),
            type=str(body["type"]),
            field_type=str(body["fieldType"]),
            group_name=str(group),
            options=self._options(ctx, body.get("options", [])),
            description=str(body.get("description") or ""),
            foreign=False,
        )
        prop.form_field = bool(body.get("formField", False))
        prop.hidden = bool(body.get("hidden", False))
        prop.display_order = int(body.get("displayOrder", -1))
        return Reply(201, prop.to_json())

    def props_update(self, ctx: Ctx, otype: str, name: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "write"))
        prop = self._prop(object_type, name)
        body = ctx.json_object()
        if prop.foreign:
            self._foreign(ctx, "property_definition", name, ",".join(sorted(body)))
        self._check_types(body.get("type", prop.type), body.get("fieldType", prop.field_type))
        if "groupName" in body and body["groupName"] not in self.state.groups[object_type]:
            raise validation_error(f"Property group {body['groupName']!r} does not exist")
        if "options" in body:
            prop.options = self._options(ctx, body["options"])  # the whole list is replaced
        for key, attr in (
            ("label", "label"),
            ("type", "type"),
            ("fieldType", "field_type"),
            ("groupName", "group_name"),
            ("description", "description"),
            ("hidden", "hidden"),
            ("formField", "form_field"),
            ("displayOrder", "display_order"),
        ):
            if key in body:
                setattr(prop, attr, body[key])
        prop.updated_at = self.state.clock.now()
        return Reply(200, prop.to_json())

    def props_archive(self, ctx: Ctx, otype: str, name: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "write"))
        prop = self._prop(object_type, name)
        if prop.foreign:
            self._foreign(ctx, "property_definition", name, "archive")
        if prop.hubspot_defined:
            raise validation_error(f"{name} is a HubSpot-defined property and cannot be archived")
        prop.archived_at = self.state.clock.now()
        return Reply(204)

    def groups_list(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "read"))
        return Reply(
            200, {"results": [g.to_json() for g in self.state.groups[object_type].values()]}
        )

    def groups_get(self, ctx: Ctx, otype: str, name: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "read"))
        group = self.state.groups[object_type].get(name)
        if group is None:
            raise not_found(f"Unable to find property group {name} for object type {object_type}.")
        return Reply(200, group.to_json())

    def groups_create(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(schema_scope(object_type, "write"))
        body = ctx.json_object()
        ctx.required(body, "PropertyGroupCreate", "name", "label")
        name = body.get("name")
        if not isinstance(name, str) or not _PROPERTY_NAME.match(name):
            raise validation_error(f"Invalid group name {name!r}")
        if name in self.state.groups[object_type]:
            raise ApiError(409, f"Property group '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        group = PropertyGroup(
            name, str(body.get("label") or name), int(body.get("displayOrder", -1))
        )
        self.state.groups[object_type][name] = group
        return Reply(201, group.to_json())

    # ------------------------------------------------------------------ pipelines

    def pipelines(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(object_scope(object_type, "read"))
        if object_type != "deals":
            return Reply(200, {"results": []})
        stages = [
            {
                "id": stage_id,
                "label": label,
                "displayOrder": order,
                "metadata": {"isClosed": "true" if closed else "false", "probability": probability},
                "archived": False,
            }
            for order, (stage_id, label, closed, probability) in enumerate(DEAL_STAGES)
        ]
        return Reply(
            200,
            {
                "results": [
                    {
                        "id": "default",
                        "label": "Sales Pipeline",
                        "displayOrder": 0,
                        "stages": stages,
                    }
                ]
            },
        )
