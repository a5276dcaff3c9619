{#- Each monitored field of what was served and of what landed, per event day, against the deployed
    model's baseline. Any dataset: the fields are the source's (macros/monitoring/monitored_project.sql). -#}
{%- set numeric = monitored_columns('numeric') -%}
{%- set categorical = monitored_columns('categorical') -%}
{%- set fields = ml_request_fields() -%}
{%- set event_time = ml_landing('event_time') %}

with

-- The served record's fields, typed as the source declares them; a field the record does not
-- carry (a landing column no feature reads is not a request field) is not observed.
served as (
    select
        event_date as __monitoring_day,
        {%- for column in numeric + categorical %}
        {%- set key = column | replace("'", "''") %}
        try_cast(record->>'{{ key }}' as {{ fields[column] }}) as {{ adapter.quote(column) }},
        json_exists(record, '$."{{ key | replace('"', '\\"') }}"') as {{ adapter.quote('__served:' ~ column) }},
        {%- endfor %}
        request_id
    from {{ ref('stg_serving__predictions') }}
),

landed as (
    select
        {%- if event_time %}
        cast(cast({{ adapter.quote(event_time) }} as timestamp) as date) as __monitoring_day,
        {%- else %}
        cast(null as date) as __monitoring_day,
        {%- endif %}
        *
    from {{ ml_source_relation() }}
),

baseline as (
    select * from {{ ref('monitoring_baseline') }}
    where baseline_id = {{ selected_monitoring_baseline(ref('monitoring_baseline')) }}
),

-- One row per (source, record, monitored column): what was served and what landed.
observations as (
    {%- set pairs = [] -%}
    {%- for column in numeric + categorical -%}
    {%- for source, day in [('served', '__monitoring_day'), ('landed', '__monitoring_day')] -%}
    {%- do pairs.append((column, source, day)) -%}
    {%- endfor -%}
    {%- endfor %}
    {%- for column, source, day in pairs %}
    select
        '{{ source }}' as data_source,
        {{ day }} as day,
        '{{ column }}' as column_name,
        {{ adapter.quote(column) }} is null as is_null,
        {% if column in numeric %}cast({{ adapter.quote(column) }} as double){% else %}cast(null as double){% endif %} as numeric_value,
        {% if column in categorical %}cast({{ adapter.quote(column) }} as varchar){% else %}cast(null as varchar){% endif %} as category_value
    from {{ source }}
    {%- if source == 'served' %}
    where {{ adapter.quote('__served:' ~ column) }}
    {%- endif %}
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- if not pairs %}
    select cast(null as varchar) as data_source, cast(null as date) as day, cast(null as varchar) as column_name,
        false as is_null, cast(null as double) as numeric_value, cast(null as varchar) as category_value
    where false
    {%- endif %}
),

binned as (
    select
        observations.data_source,
        observations.day,
        observations.column_name,
        observations.is_null,
        -- categorical values the baseline never saw fall into bin 0
        case when not observations.is_null then coalesce(bins.bin_index, 0) end as bin_index
    from observations
    left join baseline as bins
        on bins.column_name = observations.column_name
        and (
            (bins.bin_kind = 'numeric'
                and observations.numeric_value >= coalesce(bins.lower_bound, '-infinity'::double)
                and observations.numeric_value < coalesce(bins.upper_bound, 'infinity'::double))
            or (bins.bin_kind = 'categorical' and bins.category = observations.category_value)
        )
),

daily as (
    select
        data_source,
        day,
        column_name,
        count(*) as count_rows,
        count(*) filter (where is_null) as count_nulls
    from binned
    group by all
),

per_bin as (
    select data_source, day, column_name, bin_index, count(*) as count_in_bin
    from binned
    where bin_index is not null
    group by all
),

shares as (
    select
        daily.data_source,
        daily.day,
        daily.column_name,
        bins.bin_index,
        coalesce(per_bin.count_in_bin, 0)::double / nullif(daily.count_rows - daily.count_nulls, 0) as actual_share,
        bins.expected_share
    from daily
    inner join baseline as bins on bins.column_name = daily.column_name
    left join per_bin
        on per_bin.data_source = daily.data_source
        and per_bin.day = daily.day
        and per_bin.column_name = daily.column_name
        and per_bin.bin_index = bins.bin_index
),

scored as (
    select
        data_source,
        day,
        column_name,
        sum({{ psi_term('actual_share', 'expected_share') }}) as psi,
        max(abs(actual_share - expected_share)) as max_share_change,
        max(actual_share) filter (where bin_index = 0) as unseen_share
    from shares
    group by all
),

final as (
    select
        daily.data_source,
        daily.day,
        daily.column_name,
        any_value(bins.bin_kind) as column_kind,
        daily.count_rows,
        daily.count_nulls,
        daily.count_nulls::double / daily.count_rows as null_fraction,
        any_value(bins.baseline_null_fraction) as baseline_null_fraction,
        round(any_value(scored.psi), 6) as psi,
        round(any_value(scored.max_share_change), 6) as max_share_change,
        round(any_value(scored.unseen_share), 6) as unseen_share,
        coalesce(any_value(scored.psi) >= {{ var('drift_psi_threshold', 0.2) }}, false) as is_drifted,
        any_value(bins.baseline_id) as baseline_id
    from daily
    left join scored using (data_source, day, column_name)
    -- a column the baseline does not know cannot be judged: it is not reported
    inner join baseline as bins on bins.column_name = daily.column_name
    group by daily.data_source, daily.day, daily.column_name, daily.count_rows, daily.count_nulls
)

select * from final
