{#- Generic test (on a model): each day's row count is within max_relative_diff of the median
    of the trailing_days days before it. Days are a dense calendar from the first to the last
    day, so a missing day counts 0 rows; the first day has no history and is not judged. -#}
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
    select cast(unnest(generate_series(min(day), max(day), interval 1 day)) as date) as day
    from counts
),

days as (
    select
        calendar.day,
        coalesce(counts.count_rows, 0) as count_rows
    from calendar
    left join counts using (day)
),

with_history as (
    select
        day,
        count_rows,
        median(count_rows) over (
            order by day rows between {{ trailing_days }} preceding and 1 preceding
        ) as expected
    from days
),

checks as (
    select
        cast(day as varchar) as segment,
        'row_count' as metric,
        expected,
        count_rows::double as actual,
        {{ max_relative_diff }} as threshold,
        expected * (1 - {{ max_relative_diff }}) as lower_bound,
        expected * (1 + {{ max_relative_diff }}) as upper_bound,
        expected is not null as is_judged
    from with_history
),

final as (
    {{ check_result('checks') }}
)

select * from final
{% endtest %}
