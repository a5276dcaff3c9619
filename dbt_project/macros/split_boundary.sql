{#-
  Boundary of the time-based split: `train_end` (first validation day) or `valid_end` (first
  test day). The orchestrator passes both from pipeline.yml; when dbt runs alone they default to
  70% and 85% of the staged days, so `dbt build` works without vars.
-#}
{% macro split_boundary(name) -%}
    {%- set value = var(name, none) -%}
    {%- set defaults = {'train_end': 0.70, 'valid_end': 0.85} -%}
    {%- if name not in defaults -%}
        {{ exceptions.raise_compiler_error("split_boundary: unknown boundary '" ~ name ~ "', expected one of " ~ defaults.keys() | list) }}
    {%- endif -%}
    {%- if value -%}
        cast('{{ value }}' as date)
    {%- else -%}
        (
            select min(cast(event_at as date))
                + cast(floor((max(cast(event_at as date)) - min(cast(event_at as date)) + 1) * {{ defaults[name] }}) as integer)
            from {{ ref('stg_bank__transactions') }}
        )
    {%- endif -%}
{%- endmacro %}
