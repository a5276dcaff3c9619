{#-
  What the monitoring models read about the project, so that they are written once for any
  dataset: no table, field, label or key is named in them. Four vars say where to look (the
  orchestrator passes them from pipeline.yml; dbt_project.yml holds the same defaults for a
  standalone `dbt build`):

    ml_source           `source_name.table` of the landed records (pipeline.yml dbt.source);
                        its columns are the served records' fields, its meta.landing names the
                        event key and event time
    ml_features_model   the features mart (dbt.features_model): meta roles key, timestamp,
                        feature and label
    ml_label            which label column, when the mart has several (pipeline.yml label)
    ml_task             binary, multiclass or regression (pipeline.yml task)

  Graph lookups return empty values at parse time (the graph is loaded only at execution). Unit
  tests have no graph either: they set vars `ml_fields` ({name: type}), `ml_event_key`,
  `ml_event_time`, `ml_mart_columns` ({key, timestamp, label}) and `monitored_features` instead.
-#}

{% macro ml_source_parts() %}
    {%- set name = var('ml_source') -%}
    {%- if name.count('.') != 1 -%}
        {{ exceptions.raise_compiler_error("var ml_source must be `source_name.table` (pipeline.yml dbt.source), got '" ~ name ~ "'") }}
    {%- endif -%}
    {{ return(name.split('.')) }}
{% endmacro %}

{#- The landed records: what dbt reads for the source (the orchestrator points it at the ingested raw table). -#}
{% macro ml_source_relation() -%}
    {%- set parts = ml_source_parts() -%}
    {{ source(parts[0], parts[1]) }}
{%- endmacro %}

{% macro ml_source_node() %}
    {%- if not execute or 'sources' not in graph -%}{{ return(none) }}{%- endif -%}
    {%- set parts = ml_source_parts() -%}
    {%- for node in graph.sources.values() if node.source_name == parts[0] and node.name == parts[1] -%}
        {{ return(node) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("monitoring: no dbt source '" ~ var('ml_source') ~ "' (var ml_source, pipeline.yml dbt.source); declare it in models/staging/<source>/_<source>__sources.yml") }}
{% endmacro %}

{#- A served record's fields and their types: the source's declared columns without its labels. -#}
{% macro ml_request_fields() %}
    {%- if var('ml_fields', none) is not none -%}{{ return(var('ml_fields')) }}{%- endif -%}
    {%- set node = ml_source_node() -%}
    {%- set fields = {} -%}
    {%- if node is not none -%}
        {%- for column in node.columns.values() if (column.meta or {}).get('role') != 'label' -%}
            {%- if not column.data_type -%}
                {{ exceptions.raise_compiler_error("source " ~ var('ml_source') ~ ", column " ~ column.name ~ ": no data_type; every source column declares its type (it is the request schema)") }}
            {%- endif -%}
            {%- do fields.update({column.name: column.data_type | lower}) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(fields) }}
{% endmacro %}

{#- The source's `meta.landing` entry `what` (event_key, event_time), or none. -#}
{% macro ml_landing(what) %}
    {%- if var('ml_' ~ what, none) is not none -%}{{ return(var('ml_' ~ what)) }}{%- endif -%}
    {%- set node = ml_source_node() -%}
    {%- if node is none -%}{{ return(none) }}{%- endif -%}
    {{ return(((node.meta or {}).get('landing') or {}).get(what)) }}
{% endmacro %}

{% macro ml_features_relation() -%}
    {{ ref(var('ml_features_model')) }}
{%- endmacro %}

{#- The features mart's column with meta role `role` (key, timestamp, label); var ml_label picks a label. -#}
{% macro ml_mart_column(role) %}
    {%- if var('ml_mart_columns', none) is not none -%}{{ return(var('ml_mart_columns')[role]) }}{%- endif -%}
    {%- if not execute or 'nodes' not in graph -%}{{ return(role) }}{%- endif -%}
    {%- if role == 'label' and var('ml_label', none) -%}{{ return(var('ml_label')) }}{%- endif -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == var('ml_features_model') -%}
        {%- for column in node.columns.values() if (column.meta or {}).get('role') == role -%}
            {{ return(column.name) }}
        {%- endfor -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("monitoring: model " ~ var('ml_features_model') ~ " (var ml_features_model) has no column with meta.role " ~ role ~ "; declare it in the model's yml") }}
{% endmacro %}

{#-
  The model's features: the mart's columns whose meta role is `feature`, in the mart's order, so
  a feature added to the mart is monitored without being listed again. Var `monitored_features`
  overrides the list (unit tests, which have no graph, set it).
-#}
{% macro model_feature_columns() %}
    {%- if var('monitored_features', none) is not none -%}{{ return(var('monitored_features')) }}{%- endif -%}
    {%- if not execute or 'nodes' not in graph -%}{{ return([]) }}{%- endif -%}
    {%- set features = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == var('ml_features_model') -%}
        {%- for column in node.columns.values() if (column.meta or {}).get('role') == 'feature' -%}
            {%- do features.append(column.name) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(features) }}
{% endmacro %}

{#-
  The landed fields whose drift is measured, by kind: numbers on the baseline's decile bins, the
  rest (text, booleans) on its category shares. The event key and time are not measured (every
  value is new). Var `monitored_columns` ({numeric: [...], categorical: [...]}) overrides them.
-#}
{% macro monitored_columns(kind) %}
    {%- set override = var('monitored_columns', none) -%}
    {%- if override is not none -%}{{ return(override.get(kind, [])) }}{%- endif -%}
    {%- set skipped = [ml_landing('event_key'), ml_landing('event_time')] -%}
    {%- set out = [] -%}
    {%- for name, type in ml_request_fields().items() if name not in skipped -%}
        {%- set numeric = type.split('(')[0] in ['double', 'float', 'real', 'decimal', 'numeric', 'integer', 'int',
                                                'bigint', 'smallint', 'tinyint', 'hugeint', 'ubigint', 'uinteger'] -%}
        {%- if (kind == 'numeric') == numeric and not type.startswith('timestamp') and type != 'date' -%}
            {%- do out.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(out) }}
{% endmacro %}

{#- The version of a versioned monitoring baseline that the deployed model learned from: the one
    built for its training window (var train_end: the orchestrator passes the champion's), else the newest. -#}
{% macro selected_monitoring_baseline(baseline) -%}
    (select baseline_id from {{ baseline }}
     {%- if var('train_end', none) %} where train_end = {{ monitoring_train_end() }}{% endif %}
     order by built_at desc, baseline_id limit 1)
{%- endmacro %}

{#- The first day after the training window: var train_end (the orchestrator passes the deployed
    model's), else 70% of the landed days, as the pipeline's default split. -#}
{% macro monitoring_train_end() -%}
    {%- if var('train_end', none) -%}
        cast('{{ var('train_end') }}' as date)
    {%- else -%}
        {%- set event_time = ml_landing('event_time') -%}
        (
            select min(day) + cast(floor((max(day) - min(day) + 1) * 0.70) as integer)
            from (select cast(cast({{ adapter.quote(event_time or 'event_at') }} as timestamp) as date) as day
                  from {{ ml_source_relation() }})
        )
    {%- endif -%}
{%- endmacro %}
