{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='baseline_id',
        on_schema_change='fail'
    )
}}

{%- set features = model_feature_columns() -%}
{%- set timestamp = ml_mart_column('timestamp') %}

with

features as (
    select * from {{ ml_features_relation() }}
),

boundary as (
    select {{ monitoring_train_end() }} as train_end
),

-- The version monitoring_baseline built for this training window: both are versioned together,
-- so var `baseline_id` (the deployed model's training window) selects the matching rows.
version as (
    select baseline_id, train_end
    from {{ ref('monitoring_baseline') }}
    where train_end = (select train_end from boundary)
    order by built_at desc, baseline_id
    limit 1
),

training_window as (
    select features.*
    from features
    where features.{{ adapter.quote(timestamp) }} < (select train_end from boundary)
),

-- Each feature's frozen bins: between its distinct training-window deciles, open-ended at both
-- ends; a value v falls into bin 1 + (number of edges <= v). A feature with at most 10 distinct
-- values (a flag, an index) has its values as edges instead, one bin each: the deciles of a
-- mostly-0 flag are all 0, and with the one edge [0] its 0s and 1s would share a bin.
edges as (
    {%- for feature in features %}
    select
        '{{ feature }}' as feature_name,
        {{ loop.index }} as feature_order,
        list_sort(list_distinct(case when count(distinct {{ adapter.quote(feature) }}) <= 10
            then list(distinct cast({{ adapter.quote(feature) }} as double)) filter (where {{ adapter.quote(feature) }} is not null)
            else quantile_cont(cast({{ adapter.quote(feature) }} as double), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        end)) as edges,
        (count(*) - count({{ adapter.quote(feature) }}))::double / nullif(count(*), 0) as baseline_null_fraction
    from training_window
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

binned as (
    {%- for feature in features %}
    select
        '{{ feature }}' as feature_name,
        len(list_filter(edges.edges, e -> e <= cast(training_window.{{ adapter.quote(feature) }} as double))) + 1 as bin_index,
        count(*) as count_in_bin
    from training_window
    inner join edges on edges.feature_name = '{{ feature }}'
    where training_window.{{ adapter.quote(feature) }} is not null
    group by all
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

shares as (
    select
        edges.feature_name,
        list(coalesce(binned.count_in_bin, 0)::double / nullif(totals.count_values, 0) order by bins.bin_index)
            as expected_shares
    from edges
    cross join lateral (select unnest(range(1, len(edges.edges) + 2)) as bin_index) as bins
    left join binned
        on binned.feature_name = edges.feature_name
        and binned.bin_index = bins.bin_index
    inner join (select feature_name, sum(count_in_bin) as count_values from binned group by all) as totals
        on totals.feature_name = edges.feature_name
    group by edges.feature_name
),

final as (
    select
        version.baseline_id,
        version.train_end,
        edges.feature_name,
        cast(edges.feature_order as integer) as feature_order,
        edges.edges,
        shares.expected_shares,
        edges.baseline_null_fraction,
        cast(current_timestamp as timestamp) as built_at
    from edges
    inner join shares using (feature_name)
    cross join version
)

select * from final
