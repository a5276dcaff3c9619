with

log_records as (
    select * from {{ ref('stg_serving__prediction_log_lines') }}
),

final as (
    select
        log_file,
        count(distinct line_number) as count_lines,
        count(*) filter (where not is_malformed) as count_predictions,
        count(distinct line_number) filter (where is_malformed) as count_malformed,
        min(line_number) filter (where is_malformed) as first_malformed_line,
        arg_min(malformed_reason, [line_number, record_index]) filter (where is_malformed) as first_malformed_reason
    from log_records
    group by all
)

select * from final
