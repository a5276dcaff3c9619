{%- set features = model_feature_columns() -%}
{%- set timestamp = ml_mart_column('timestamp') %}

with

features as (
    select * from {{ ml_features_relation() }}
),

baseline as (
    select * from {{ ref('monitoring_feature_baseline') }}
    where baseline_id = {{ selected_monitoring_baseline(ref('monitoring_feature_baseline')) }}
),

-- One row per (landed transaction, feature): the bin of the mart's value on the baseline's
-- frozen edges (null when the value is null).
binned as (
    {%- for feature in features %}
    select
        cast(features.{{ adapter.quote(timestamp) }} as date) as day,
        '{{ feature }}' as feature_name,
        case when features.{{ adapter.quote(feature) }} is not null
            then len(list_filter(baseline.edges, e -> e <= cast(features.{{ adapter.quote(feature) }} as double))) + 1
        end as bin_index
    from features
    inner join baseline on baseline.feature_name = '{{ feature }}'
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

per_bin as (
    select day, feature_name, bin_index, count(*) as count_in_bin
    from binned
    where bin_index is not null
    group by all
),

daily as (
    select
        day,
        feature_name,
        count(*) as count_rows,
        count(*) filter (where bin_index is null) as count_nulls
    from binned
    group by all
),

-- Every (day, feature, bin), with the counts of the 7 days ending that day: a single day holds one
-- weekday, so day-level shares would make calendar features drift every day by construction.
grid as (
    select
        daily.day,
        daily.feature_name,
        bins.bin_index,
        baseline.expected_shares[bins.bin_index] as expected_share,
        coalesce(per_bin.count_in_bin, 0) as count_in_bin,
        daily.count_rows - daily.count_nulls as count_values
    from daily
    inner join baseline on baseline.feature_name = daily.feature_name
    cross join lateral (select unnest(range(1, len(baseline.expected_shares) + 1)) as bin_index) as bins
    left join per_bin
        on per_bin.day = daily.day
        and per_bin.feature_name = daily.feature_name
        and per_bin.bin_index = bins.bin_index
),

shares as (
    select
        day,
        feature_name,
        bin_index,
        expected_share,
        sum(count_in_bin) over trailing_week::double
            / nullif(sum(count_values) over trailing_week, 0) as actual_share,
        count(*) over trailing_week as count_days
    from grid
    window trailing_week as (
        partition by feature_name, bin_index order by day range between interval 6 days preceding and current row
    )
),

scored as (
    select
        day,
        feature_name,
        sum({{ psi_term('actual_share', 'expected_share') }}) as psi,
        max(abs(actual_share - expected_share)) as max_share_change
    from shares
    -- a day is judged once a full week of data ends on it (a shorter window is not a week)
    where count_days = 7
    group by all
),

final as (
    select
        daily.day,
        daily.feature_name,
        baseline.feature_order,
        daily.count_rows,
        daily.count_nulls::double / daily.count_rows as null_fraction,
        baseline.baseline_null_fraction,
        round(scored.psi, 6) as psi,
        round(scored.max_share_change, 6) as max_share_change,
        coalesce(scored.psi >= {{ var('drift_psi_threshold', 0.2) }}, false) as is_drifted,
        baseline.baseline_id
    from daily
    inner join baseline on baseline.feature_name = daily.feature_name
    inner join scored on scored.day = daily.day and scored.feature_name = daily.feature_name
)

select * from final
