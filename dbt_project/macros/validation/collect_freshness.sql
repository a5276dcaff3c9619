{#-
  `dbt source freshness` with a settable clock: the age of a source is measured against var
  `freshness_as_of` (an ISO timestamp, UTC) when it is set, else against the wall clock, so
  replays, backfills and the fixed-date demo data are judged relative to their own schedule.
  Overrides dbt's default for DuckDB; the query shape is dbt's own.
-#}
{% macro duckdb__collect_freshness(source, loaded_at_field, filter) %}
  {% call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
    select
      max({{ loaded_at_field }}) as max_loaded_at,
      {{ freshness_as_of() }} as snapshotted_at
    from {{ source }}
    {% if filter %}
    where {{ filter }}
    {% endif %}
  {% endcall %}
  {{ return(load_result('collect_freshness')) }}
{% endmacro %}

{% macro freshness_as_of() -%}
    {%- set as_of = var('freshness_as_of', none) -%}
    {%- if as_of -%}cast('{{ as_of }}' as timestamp){%- else -%}{{ current_timestamp() }}{%- endif -%}
{%- endmacro %}
