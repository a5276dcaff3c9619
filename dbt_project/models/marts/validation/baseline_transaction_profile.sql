{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='baseline_id',
        on_schema_change='fail'
    )
}}

with

training_window as (
    select * from {{ ref('int_transactions__training_window') }}
),

-- Content-addressed: the same training rows give the same id in every run, so a version is
-- stored once however often it is rebuilt.
version as (
    select
        md5(concat_ws('|', count(*), sum(hash(training_window)), {{ split_boundary('train_end') }})) as baseline_id,
        cast({{ split_boundary('train_end') }} as date) as train_end,
        count(*) as count_training_rows
    from training_window
),

profile as (
    {{ column_profile(
        'training_window',
        numeric_columns=['amount', 'is_fraud'],
        categorical_columns=['merchant_category', 'currency', 'country', 'channel', 'device'],
        hour_columns=['event_at'],
        format_columns=['user_id', 'merchant_id', 'currency', 'country'],
        entity_columns=['user_id'],
    ) }}
),

final as (
    select
        version.baseline_id,
        version.train_end,
        version.count_training_rows,
        profile.column_name,
        profile.metric,
        profile.category,
        profile.value,
        cast(current_timestamp as timestamp) as built_at
    from profile
    cross join version
)

select * from final
