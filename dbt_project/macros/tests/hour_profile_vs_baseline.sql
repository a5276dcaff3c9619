{#- Generic test on a timestamp column: each day's hour-of-day profile (the share of its rows in
    each UTC hour) is within max_distance of the baseline's, measured as the total variation
    distance (half the sum of the 24 absolute share differences: the share of rows that would
    have to move to another hour). Timestamps in the wrong zone (naive local time read as UTC)
    shift the whole profile, which no mean or range check sees. A day with fewer than min_rows
    rows is not judged: sampling noise alone moves a small day's profile. -#}
{% test hour_profile_vs_baseline(model, column_name, baseline, max_distance=0.15, min_rows=1000) %}
{{ config(store_failures=true, fail_calc='count(*) filter (where not passed)',
          meta={'fix': 'the hours of the day moved: timestamps in another zone than the source declares? '
                       'Write them with their zone (or declare meta.landing.time_zone in the dbt source) and '
                       're-deliver the day'}) }}
with

reference as (
    {{ baseline_categories(baseline, column_name, 'hour_share') }}
),

hours as (
    select
        cast(cast({{ column_name }} as date) as varchar) as segment,
        {{ hour_of_day(column_name) }} as category,
        count(*) as count_in_hour
    from {{ model }}
    where {{ column_name }} is not null
    group by 1, 2
),

day_totals as (
    select segment, sum(count_in_hour) as count_rows from hours group by 1
),

-- Every (day, hour of day), hours without rows at share 0 on both sides.
grid as (
    select day_totals.segment, day_totals.count_rows, lpad(cast(h as varchar), 2, '0') as category
    from day_totals
    cross join range(24) as hours_of_day(h)
),

days as (
    select
        grid.segment,
        any_value(grid.count_rows) as count_rows,
        sum(abs(coalesce(hours.count_in_hour, 0)::double / grid.count_rows - coalesce(reference.share, 0))) / 2
            as distance,
        -- no baseline profile fails rather than passes
        case when count(reference.share) > 0 then 0.0 end as expected
    from grid
    left join hours using (segment, category)
    left join reference using (category)
    group by grid.segment
),

final as (
    {{ check_result('days', 'hour_profile_distance', actual='distance', threshold=max_distance,
                    lower='expected', upper='expected + ' ~ max_distance, judged='count_rows >= ' ~ min_rows) }}
)

select * from final
{% endtest %}
