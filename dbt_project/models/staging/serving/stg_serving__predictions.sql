with

log_lines as (
    select * from {{ ref('stg_serving__prediction_log_lines') }}
),

well_formed as (
    select * from log_lines
    where not is_malformed
),

final as (
    select
        request_id,
        record_index,
        logged_at,
        model_id,
        score,
        label as predicted_label,
        served_features,
        record,
        event_key,
        event_at,
        cast(event_at as date) as event_date,
        log_file,
        line_number
    from well_formed
)

select * from final
