{#- Generic tests on a categorical column, per day, over non-null values:
    accepted_category_set: the share of values outside `values` is at most max_share;
    unseen_category_share: the share of values the baseline never saw is at most max_share. -#}
{% test accepted_category_set(model, column_name, values, max_share=0, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
{%- set known -%}
    select unnest([{% for v in values %}'{{ v }}'{{ "," if not loop.last }}{% endfor %}]) as category
{%- endset -%}
{{ share_outside(model, column_name, known, 'share_outside_accepted', max_share, timestamp_column) }}
{% endtest %}

{% test unseen_category_share(model, column_name, baseline, max_share=0.01, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
{%- set known -%}
    select category
    from {{ baseline }}
    where baseline_id = {{ selected_baseline_id(baseline) }}
        and column_name = '{{ column_name }}'
        and metric = 'category_share'
{%- endset -%}
{{ share_outside(model, column_name, known, 'unseen_share', max_share, timestamp_column) }}
{% endtest %}

{% macro share_outside(model, column_name, known_sql, metric, max_share, timestamp_column) %}
with

known as (
    {{ known_sql }}
),

values_seen as (
    select
        {{ timestamp_column }},
        {{ column_name }} in (select category from known) as is_known
    from {{ model }}
    where {{ column_name }} is not null
),

days as (
    select
        *,
        -- no known categories at all (e.g. a missing baseline) fails rather than passes
        case when (select count(*) from known) > 0 then 0.0 end as expected
    from ({{ daily('values_seen', timestamp_column, {'share_outside': 'count(*) filter (where not is_known)::double / count(*)'}) }})
),

final as (
    {{ check_result('days', metric, actual='share_outside', threshold=max_share, lower='expected',
                    upper=max_share) }}
)

select * from final
{% endmacro %}
