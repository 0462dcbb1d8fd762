"""describe / global describe bodies for the Salesforce emulator (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .salesforce_schema import FieldDef, ObjectDef

MAX_BATCH_SIZE = 200
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


def object_summary(definition: ObjectDef, version: str) -> dict[str, Any]:
    base = f"/services/data/v{version}/sobjects/{definition.name}"
    return {
        "name": definition.name,
        "label": definition.label,
        "labelPlural": definition.label_plural,
        "keyPrefix": definition.key_prefix,
        "custom": False,
        "createable": definition.createable,
        "updateable": definition.updateable,
        "deletable": definition.deletable,
        "queryable": True,
        "retrieveable": True,
        "undeletable": True,
        "mergeable": definition.mergeable,
        "replicateable": True,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }


def global_describe(objects: Iterable[ObjectDef], version: str) -> dict[str, Any]:
    summaries = [object_summary(definition, version) for definition in objects]
    return {"encoding": "UTF-8", "maxBatchSize": MAX_BATCH_SIZE, "sobjects": summaries}


def describe(definition: ObjectDef, version: str) -> dict[str, Any]:
    """The object's describe; fields the API user can't read are left out, as in Salesforce."""
    summary = object_summary(definition, version)
    summary["fields"] = [describe_field(f) for f in definition.fields.values() if f.readable]
    summary["childRelationships"] = []
    summary["recordTypeInfos"] = []
    return summary


def describe_field(spec: FieldDef) -> dict[str, Any]:
    is_picklist = spec.type in ("picklist", "multipicklist")
    return {
        "name": spec.name,
        "label": spec.label,
        "type": spec.type,
        "soapType": _SOAP_TYPES.get(spec.type, "xsd:string"),
        "length": spec.length,
        "custom": spec.custom,
        "nillable": not spec.required and spec.type != "boolean",
        "createable": spec.createable,
        "updateable": spec.updateable,
        "filterable": True,
        "sortable": spec.type not in ("multipicklist", "textarea"),
        "defaultedOnCreate": spec.default is not None,
        "defaultValue": spec.default if is_picklist or spec.type == "boolean" else None,
        "picklistValues": [
            {
                "active": True,
                "defaultValue": value == spec.default,
                "label": value,
                "validFor": None,
                "value": value,
            }
            for value in spec.picklist_values
        ],
        "restrictedPicklist": spec.restricted,
        "referenceTo": list(spec.reference_to),
        "relationshipName": spec.relationship_name if spec.type == "reference" else None,
        "externalId": False,
        "unique": False,
        "idLookup": spec.name == "Id",
    }
