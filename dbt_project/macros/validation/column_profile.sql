{#-
  Profile of a relation in long form, one row per (column, metric[, category]):
  null_fraction for every listed column; mean, std, min and max for numeric ones (booleans count
  as 0/1, so the mean of a label is its rate); category_share per category for categorical ones.
  The distribution tests in macros/tests/ compare each day of new data with these rows.
-#}
{% macro column_profile(relation, numeric_columns=[], categorical_columns=[]) %}
    {%- for column in numeric_columns + categorical_columns %}
    select
        '{{ column }}' as column_name,
        'null_fraction' as metric,
        cast(null as varchar) as category,
        (count(*) - count({{ column }}))::double / nullif(count(*), 0) as value
    from {{ relation }}
    union all
    {%- endfor %}
    {%- for column in numeric_columns %}
    select '{{ column }}' as column_name, metric, cast(null as varchar) as category, value
    from (
        select
            avg(cast({{ column }} as double)) as mean,
            stddev_pop(cast({{ column }} as double)) as std,
            min(cast({{ column }} as double)) as min,
            max(cast({{ column }} as double)) as max
        from {{ relation }}
    ) unpivot (value for metric in (mean, std, min, max))
    union all
    {%- endfor %}
    {%- for column in categorical_columns %}
    select
        '{{ column }}' as column_name,
        'category_share' as metric,
        {{ column }} as category,
        count(*)::double / sum(count(*)) over () as value
    from {{ relation }}
    where {{ column }} is not null
    group by {{ column }}
    {{ "union all" if not loop.last }}
    {%- endfor %}
{% endmacro %}

{#- The baseline version the distribution tests compare with: var `baseline_id` (the orchestrator
    passes the one the deployed model learned from), else the most recently built one. -#}
{% macro selected_baseline_id(baseline) -%}
    {%- set version = var('baseline_id', none) -%}
    {%- if version -%}
        '{{ version }}'
    {%- else -%}
        (select baseline_id from {{ baseline }} order by built_at desc, baseline_id limit 1)
    {%- endif -%}
{%- endmacro %}

{#- One row: the baseline's value of a metric (null when the baseline lacks it, which fails the check). -#}
{% macro baseline_value(baseline, column_name, metric) %}
    select max(value) as value
    from {{ baseline }}
    where baseline_id = {{ selected_baseline_id(baseline) }}
        and column_name = '{{ column_name }}'
        and metric = '{{ metric }}'
{% endmacro %}
