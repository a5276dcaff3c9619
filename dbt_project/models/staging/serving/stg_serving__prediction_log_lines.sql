{#- Every non-empty line of every prediction log file, parsed; a line that is not a complete
    prediction record is kept and flagged (malformed_reason), never dropped. -#}
{%- set fields = prediction_log_input_fields() -%}
{%- set logs = source('serving', 'prediction_logs') -%}

with

{% if prediction_logs_exist() %}
files as (
    select
        parse_filename(filename) as log_file,
        string_split(content, chr(10)) as lines
    from {{ logs }}
),

numbered as (
    select
        log_file,
        cast(generate_subscripts(lines, 1) as bigint) as line_number,
        unnest(lines) as line
    from files
),
{% else %}
-- No log file yet (nothing served): an empty relation of the same shape.
numbered as (
    select cast(null as varchar) as log_file, cast(null as bigint) as line_number, cast(null as varchar) as line
    where false
),
{% endif %}

lines as (
    select
        log_file,
        line_number,
        line,
        case when json_valid(line) then cast(line as json) end as doc
    from numbered
    where trim(line) <> ''
),

parsed as (
    select
        log_file,
        line_number,
        doc is not null as is_json,
        doc->>'request_id' as request_id,
        try_cast(doc->>'record_index' as bigint) as record_index,
        try_cast(replace(doc->>'logged_at', 'Z', '') as timestamp) as logged_at,
        doc->>'model_id' as model_id,
        try_cast(doc->>'score' as double) as score,
        try_cast(doc->>'label' as integer) as label,
        json_type(doc->'inputs') = 'OBJECT' as has_inputs,
        {%- for name, type in fields.items() %}
        doc->'inputs'->>'{{ name }}' as {{ name }}_text,
        try_cast(doc->'inputs'->>'{{ name }}' as {{ type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from lines
),

final as (
    select
        log_file,
        line_number,
        case
            when not is_json then 'not valid JSON'
            when request_id is null then 'request_id missing'
            when record_index is null then 'record_index missing or not an integer'
            when logged_at is null then 'logged_at missing or not a timestamp'
            when model_id is null then 'model_id missing'
            when score is null then 'score missing or not a number'
            when not coalesce(has_inputs, false) then 'inputs missing or not an object'
            {%- for name, type in fields.items() %}
            when {{ name }}_text is not null and {{ name }} is null then 'inputs.{{ name }} is not a {{ type }}'
            {%- endfor %}
            when txn_id is null then 'inputs.txn_id missing'
            when txn_ts is null then 'inputs.txn_ts missing'
        end as malformed_reason,
        malformed_reason is not null as is_malformed,
        request_id,
        record_index,
        logged_at,
        model_id,
        score,
        label,
        {%- for name in fields %}
        {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from parsed
)

select * from final
