{#- Generic test (on a model): each day's row count is within max_relative_diff of the median
    of the trailing_days days before it. Days are a dense calendar from the first day to the last
    day with rows or, when later, var `last_partition_day` (the orchestrator passes the newest
    landed partition's day), so a missing day counts 0 rows, also at the end: a newest day whose
    rows all vanished is a gap, not the end of the data. The first day has no history and is not
    judged. -#}
{% test row_count_vs_trailing(model, timestamp_column='event_at', trailing_days=7, max_relative_diff=0.5) %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)') }}
with

counts as (
    select
        cast({{ timestamp_column }} as date) as day,
        count(*) as count_rows
    from {{ model }}
    group by 1
),

calendar as (
    {%- set last_partition_day = var('last_partition_day', none) %}
    select cast(unnest(generate_series(
        min(day),
        {% if last_partition_day %}greatest(max(day), date '{{ last_partition_day }}'){% else %}max(day){% endif %},
        interval 1 day)) as date) as day
    from counts
),

days as (
    select
        calendar.day as segment,
        coalesce(counts.count_rows, 0) as count_rows,
        median(coalesce(counts.count_rows, 0)) over (
            order by calendar.day rows between {{ trailing_days }} preceding and 1 preceding
        ) as expected
    from calendar
    left join counts using (day)
),

final as (
    {{ check_result('days', 'row_count', actual='count_rows', threshold=max_relative_diff,
                    lower='expected * (1 - ' ~ max_relative_diff ~ ')',
                    upper='expected * (1 + ' ~ max_relative_diff ~ ')', judged='expected is not null') }}
)

select * from final
{% endtest %}
