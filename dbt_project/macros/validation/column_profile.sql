{#-
  Profile of a relation in long form, one row per (column, metric[, category]):
  null_fraction for every listed column; mean, std, min and max for numeric ones (booleans count
  as 0/1, so the mean of a label is its rate); category_share per category for categorical ones;
  hour_share per hour of day (UTC, '00' to '23') for timestamp ones; format_share per value
  format (see value_format) for ids and codes; and, for entity keys, new_entity_share: the share
  of the last day's rows whose entity had not appeared on an earlier day of the relation.
  The distribution tests in macros/tests/ compare each day of new data with these rows.
-#}
{% macro column_profile(relation, numeric_columns=[], categorical_columns=[], hour_columns=[], format_columns=[],
                        entity_columns=[], timestamp_column='event_at') %}
    {%- set parts = [] -%}
    {%- for column in numeric_columns + categorical_columns %}
    {%- set part %}
    select
        '{{ column }}' as column_name,
        'null_fraction' as metric,
        cast(null as varchar) as category,
        (count(*) - count({{ column }}))::double / nullif(count(*), 0) as value
    from {{ relation }}
    {%- endset %}
    {%- do parts.append(part) %}
    {%- endfor %}
    {%- for column in numeric_columns %}
    {%- set part %}
    select '{{ column }}' as column_name, metric, cast(null as varchar) as category, value
    from (
        select
            avg(cast({{ column }} as double)) as mean,
            stddev_pop(cast({{ column }} as double)) as std,
            min(cast({{ column }} as double)) as min,
            max(cast({{ column }} as double)) as max
        from {{ relation }}
    ) unpivot (value for metric in (mean, std, min, max))
    {%- endset %}
    {%- do parts.append(part) %}
    {%- endfor %}
    {%- set shares = [] -%}
    {%- for c in categorical_columns %}{% do shares.append((c, 'category_share', c)) %}{% endfor -%}
    {%- for c in hour_columns %}{% do shares.append((c, 'hour_share', hour_of_day(c))) %}{% endfor -%}
    {%- for c in format_columns %}{% do shares.append((c, 'format_share', value_format(c))) %}{% endfor -%}
    {%- for column, metric, category in shares %}
    {%- set part %}
    select
        '{{ column }}' as column_name,
        '{{ metric }}' as metric,
        {{ category }} as category,
        count(*)::double / sum(count(*)) over () as value
    from {{ relation }}
    where {{ column }} is not null
    group by 3
    {%- endset %}
    {%- do parts.append(part) %}
    {%- endfor %}
    {%- for column in entity_columns %}
    {%- set part %}
    select '{{ column }}' as column_name, 'new_entity_share' as metric, cast(null as varchar) as category, value
    from (
        select avg(cast(first_day = day as double)) as value
        from (
            select
                cast({{ timestamp_column }} as date) as day,
                min(cast({{ timestamp_column }} as date)) over (partition by {{ column }}) as first_day
            from {{ relation }}
            where {{ column }} is not null
        ) as seen
        where day = (select max(cast({{ timestamp_column }} as date)) from {{ relation }})
    ) as last_day
    {%- endset %}
    {%- do parts.append(part) %}
    {%- endfor %}
    {{ parts | join('\n    union all') }}
{% endmacro %}

{#- The hour of day of a timestamp as text, '00' to '23': the category of metric hour_share. -#}
{% macro hour_of_day(column) -%}
    lpad(cast(hour({{ column }}) as varchar), 2, '0')
{%- endmacro %}

{#- The format of a value: each upper-case letter becomes A, lower-case a, digit 9, and any other
    character stays, so 'u_000042' is 'a_999999', '42' is '99', 'US' is 'AA' and 'USA' is 'AAA'.
    Length and character classes in one signature: a changed id or code format shows as a format
    the baseline never saw. -#}
{% macro value_format(column) -%}
    regexp_replace(regexp_replace(regexp_replace(cast({{ column }} as varchar),
        '[A-Z]', 'A', 'g'), '[a-z]', 'a', 'g'), '[0-9]', '9', 'g')
{%- endmacro %}

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
