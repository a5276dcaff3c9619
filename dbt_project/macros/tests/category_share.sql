{#- Generic tests on a categorical column, per day, over non-null values:
    accepted_category_set: the share of values outside `values` is at most max_share;
    unseen_category_share: the share of values the baseline never saw is at most max_share;
    format_profile_vs_baseline: the share of values whose format (value_format: length and
        character classes) the baseline never saw is at most max_share, so an id that loses its
        prefix or gains a trailing space, or a code switched to another standard, is caught even
        when the values themselves were never enumerable;
    category_shares_vs_baseline: the share of each category the baseline saw is within
        max_abs_diff of its baseline share, one by one, so two known categories swapped (or one
        taking over another's rows) are caught although no unseen value appears. A day with
        fewer than min_rows non-null values is not judged: at that size sampling noise alone
        moves a share by max_abs_diff. -#}
{% test accepted_category_set(model, column_name, values, max_share=0, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
{%- set known -%}
    select unnest([{% for v in values %}'{{ v }}'{{ "," if not loop.last }}{% endfor %}]) as category
{%- endset -%}
{{ share_outside(model, column_name, known, 'share_outside_accepted', max_share, timestamp_column) }}
{% endtest %}

{% test unseen_category_share(model, column_name, baseline, max_share=0.01, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)',
          meta={'fix': 'values the training data never had: if they are a remap upstream (another code '
                       'standard, a renamed value), map them back and re-deliver the day; if they are real, '
                       'raise max_share'}) }}
{{ share_outside(model, column_name, baseline_categories(baseline, column_name, 'category_share'), 'unseen_share',
                 max_share, timestamp_column) }}
{% endtest %}

{% test format_profile_vs_baseline(model, column_name, baseline, max_share=0.01, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)',
          meta={'fix': 'values in a format the training data never had (see value_format: A upper-case, a '
                       'lower-case, 9 digit): restore the format upstream (prefix, padding, no stray spaces) '
                       'and re-deliver the day'}) }}
{{ share_outside(model, column_name, baseline_categories(baseline, column_name, 'format_share'),
                 'unseen_format_share', max_share, timestamp_column, value_sql=value_format(column_name)) }}
{% endtest %}

{% test category_shares_vs_baseline(model, column_name, baseline, max_abs_diff=0.05, min_rows=2000, timestamp_column='event_at') %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)',
          meta={'fix': 'a known value took a share the training data never gave it: check for values swapped '
                       'or remapped upstream and re-deliver the day; if the mix really changed, raise '
                       'max_abs_diff'}) }}
with

reference as (
    {{ baseline_categories(baseline, column_name, 'category_share') }}
),

values_seen as (
    select cast(cast({{ timestamp_column }} as date) as varchar) as segment, {{ column_name }} as category
    from {{ model }}
    where {{ column_name }} is not null
),

day_totals as (
    select segment, count(*) as count_rows from values_seen group by 1
),

per_category as (
    select segment, category, count(*) as count_in_category from values_seen group by 1, 2
),

-- Every (day, known category), absent ones at share 0; the day is judged on its worst category.
compared as (
    select
        day_totals.segment,
        day_totals.count_rows,
        reference.category,
        reference.share as expected,
        coalesce(per_category.count_in_category, 0)::double / day_totals.count_rows as share
    from day_totals
    cross join reference
    left join per_category using (segment, category)
),

worst as (
    select * from compared
    qualify row_number() over (partition by segment order by abs(share - expected) desc, category) = 1
),

-- A day without a baseline to compare with fails (expected null) rather than passes.
days as (
    select day_totals.segment, day_totals.count_rows, worst.category, worst.expected, worst.share
    from day_totals
    left join worst using (segment)
),

final as (
    {{ check_result('days', 'category_share', actual='share', threshold=max_abs_diff,
                    lower='expected - ' ~ max_abs_diff, upper='expected + ' ~ max_abs_diff,
                    judged='count_rows >= ' ~ min_rows,
                    metric_sql="'category_share[' || coalesce(category, 'baseline missing') || ']'") }}
)

select * from final
{% endtest %}

{#- The baseline version's categories of `metric` for a column, with their shares. -#}
{% macro baseline_categories(baseline, column_name, metric) %}
    select category, value as share
    from {{ baseline }}
    where baseline_id = {{ selected_baseline_id(baseline) }}
        and column_name = '{{ column_name }}'
        and metric = '{{ metric }}'
{% endmacro %}

{#- Per day, the share of non-null values (`value_sql`, default the column) not in `known_sql`'s
    `category` column. -#}
{% macro share_outside(model, column_name, known_sql, metric, max_share, timestamp_column, value_sql=none) %}
with

known as (
    {{ known_sql }}
),

values_seen as (
    select
        {{ timestamp_column }},
        {{ value_sql or column_name }} in (select category from known) as is_known
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
