{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='baseline_id',
        on_schema_change='fail'
    )
}}

{#- The landed records of the training window, as they landed (any dataset: the fields come from
    the source, see macros/monitoring/monitored_project.sql). Versioned by content and training
    window; the monitoring marts select the version built for the deployed model's window. -#}
{%- set numeric = monitored_columns('numeric') -%}
{%- set categorical = monitored_columns('categorical') -%}
{%- set event_time = ml_landing('event_time') %}

with

boundary as (
    select {{ monitoring_train_end() }} as train_end
),

training_window as (
    select * from {{ ml_source_relation() }}
    {%- if event_time %}
    where cast({{ adapter.quote(event_time) }} as timestamp) < (select train_end from boundary)
    {%- endif %}
),

version as (
    select
        md5(concat_ws('|', count(*), sum(hash(training_window)), any_value(boundary.train_end))) as baseline_id,
        any_value(boundary.train_end) as train_end
    from training_window
    cross join boundary
),

null_fractions as (
    {%- for column in numeric + categorical %}
    select
        '{{ column }}' as column_name,
        (count(*) - count({{ adapter.quote(column) }}))::double / nullif(count(*), 0) as baseline_null_fraction
    from training_window
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- if not (numeric + categorical) %}
    select cast(null as varchar) as column_name, cast(null as double) as baseline_null_fraction where false
    {%- endif %}
),

-- Numeric columns: frozen bins between the training window's distinct deciles; the first and
-- last bins are open-ended.
edges as (
    {%- for column in numeric %}
    select
        '{{ column }}' as column_name,
        list_sort(list_distinct(quantile_cont(cast({{ adapter.quote(column) }} as double), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))) as edges
    from training_window
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- if not numeric %}
    select cast(null as varchar) as column_name, cast([] as double[]) as edges where false
    {%- endif %}
),

numeric_bins as (
    select
        column_name,
        bin_index,
        case when bin_index > 1 then edges[bin_index - 1] end as lower_bound,
        case when bin_index <= len(edges) then edges[bin_index] end as upper_bound
    from (select column_name, edges, unnest(range(1, len(edges) + 2)) as bin_index from edges)
),

numeric_shares as (
    select
        bins.column_name,
        bins.bin_index,
        bins.lower_bound,
        bins.upper_bound,
        count(observed.value)::double / sum(count(observed.value)) over (partition by bins.column_name) as expected_share
    from numeric_bins as bins
    left join (
        {%- for column in numeric %}
        select '{{ column }}' as column_name, cast({{ adapter.quote(column) }} as double) as value
        from training_window where {{ adapter.quote(column) }} is not null
        {{ "union all" if not loop.last }}
        {%- endfor %}
        {%- if not numeric %}
        select cast(null as varchar) as column_name, cast(null as double) as value where false
        {%- endif %}
    ) as observed
        on observed.column_name = bins.column_name
        and observed.value >= coalesce(bins.lower_bound, '-infinity'::double)
        and observed.value < coalesce(bins.upper_bound, 'infinity'::double)
    group by bins.column_name, bins.bin_index, bins.lower_bound, bins.upper_bound
),

-- Categorical columns: one bin per category among the training window's most frequent (by share,
-- from 1), and bin 0 for every other value, seen rarely or never; an id-like column is then
-- mostly bin 0 on both sides, and a category that takes over shows.
category_counts as (
    {%- for column in categorical %}
    select
        '{{ column }}' as column_name,
        cast({{ adapter.quote(column) }} as varchar) as category,
        count(*) as count_rows,
        row_number() over (order by count(*) desc, cast({{ adapter.quote(column) }} as varchar)) as frequency_rank
    from training_window
    where {{ adapter.quote(column) }} is not null
    group by 1, 2
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- if not categorical %}
    select cast(null as varchar) as column_name, cast(null as varchar) as category, 0 as count_rows, 0 as frequency_rank
    where false
    {%- endif %}
),

categorical_shares as (
    select
        column_name,
        cast(case when frequency_rank <= {{ var('monitored_categories', 20) }} then frequency_rank else 0 end as integer) as bin_index,
        case when frequency_rank <= {{ var('monitored_categories', 20) }} then category end as category,
        sum(count_rows)::double / sum(sum(count_rows)) over (partition by column_name) as expected_share
    from category_counts
    group by 1, 2, 3
    union all
    -- bin 0 exists even when every value was frequent (its expected share is then 0)
    select column_name, 0, null, 0.0
    from category_counts
    group by column_name
    having count(*) <= {{ var('monitored_categories', 20) }}
),

bins as (
    select column_name, 'numeric' as bin_kind, bin_index, lower_bound, upper_bound,
        cast(null as varchar) as category, expected_share
    from numeric_shares
    union all
    select column_name, 'categorical', bin_index, null, null, category, expected_share
    from categorical_shares
),

final as (
    select
        version.baseline_id,
        version.train_end,
        bins.column_name,
        bins.bin_kind,
        cast(bins.bin_index as integer) as bin_index,
        bins.lower_bound,
        bins.upper_bound,
        bins.category,
        bins.expected_share,
        null_fractions.baseline_null_fraction,
        cast(current_timestamp as timestamp) as built_at
    from bins
    inner join null_fractions using (column_name)
    cross join version
)

select * from final
