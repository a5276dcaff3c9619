{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='baseline_id',
        on_schema_change='fail'
    )
}}

{%- set numeric = monitored_numeric_columns() -%}
{%- set categorical = monitored_categorical_columns() %}

with

training_window as (
    select * from {{ ref('int_transactions__training_window') }}
),

-- Same content-addressed id as baseline_transaction_profile, so var `baseline_id` (the deployed
-- model's training window) selects the matching version of both.
boundary as (
    select cast({{ split_boundary('train_end') }} as date) as train_end
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
        (count(*) - count({{ column }}))::double / nullif(count(*), 0) as baseline_null_fraction
    from training_window
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

-- Numeric columns: frozen bins between the training window's distinct deciles; the first and
-- last bins are open-ended.
edges as (
    {%- for column in numeric %}
    select
        '{{ column }}' as column_name,
        list_sort(list_distinct(quantile_cont({{ column }}, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))) as edges
    from training_window
    {{ "union all" if not loop.last }}
    {%- endfor %}
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
        select '{{ column }}' as column_name, cast({{ column }} as double) as value
        from training_window where {{ column }} is not null
        {{ "union all" if not loop.last }}
        {%- endfor %}
    ) as observed
        on observed.column_name = bins.column_name
        and observed.value >= coalesce(bins.lower_bound, '-infinity'::double)
        and observed.value < coalesce(bins.upper_bound, 'infinity'::double)
    group by bins.column_name, bins.bin_index, bins.lower_bound, bins.upper_bound
),

-- Categorical columns: one bin per category seen in the training window (by share, from 1) and
-- bin 0 for categories it never saw, whose expected share is 0.
categorical_shares as (
    {%- for column in categorical %}
    select
        '{{ column }}' as column_name,
        cast(row_number() over (order by count(*) desc, {{ column }}) as integer) as bin_index,
        {{ column }} as category,
        count(*)::double / sum(count(*)) over () as expected_share
    from training_window
    where {{ column }} is not null
    group by {{ column }}
    union all
    select '{{ column }}', 0, null, 0.0
    {{ "union all" if not loop.last }}
    {%- endfor %}
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
